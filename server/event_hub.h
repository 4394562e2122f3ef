// SPDX-License-Identifier: MIT
//
// EventHub: wakes SSE streams when a run gets a new event. The events
// themselves are read from the Store, so a stream never misses one and any
// number of clients can follow a run, each with its own cursor.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace orch::server {

class EventHub {
 public:
  // Something happened (any run).
  void publish() {
    std::lock_guard<std::mutex> lock(mu_);
    ++epoch_;
    cv_.notify_all();
  }
  uint64_t epoch() {
    std::lock_guard<std::mutex> lock(mu_);
    return epoch_;
  }
  // Waits until publish() moves past `seen`, close() is called, or `timeout`.
  void wait(uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return epoch_ != seen || closed_; });
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  bool closed() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t epoch_ = 0;
  bool closed_ = false;
};

}  // namespace orch::server
