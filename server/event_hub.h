// SPDX-License-Identifier: MIT
//
// EventHub: wakes the SSE streams of a run when it gets a new event. The
// events themselves are read from the Store, so a stream never misses one and
// any number of clients can follow a run, each with its own cursor. A publish
// wakes only the streams of that run: with many streams open, an event does
// not send every one of them back to the store.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace orch::server {

class EventHub {
 public:
  // A new event of `run_id` is in the store.
  void publish(const std::string& run_id);
  // What to pass to wait() for `run_id`; take it before reading the store.
  uint64_t epoch(const std::string& run_id);
  // Waits until `run_id` gets an event published after `seen` was taken (or
  // possibly so: a wake-up may be spurious, never missed), close(), or `timeout`.
  void wait(const std::string& run_id, uint64_t seen, std::chrono::milliseconds timeout);
  void close();
  bool closed();
  // Streams waiting on `run_id` now.
  int waiting(const std::string& run_id);
  // publish() calls so far, of any run.
  uint64_t published();

 private:
  struct Watch {
    uint64_t epoch = 0;  // published_ at the run's last publish (or when watched)
    int waiters = 0;
    std::condition_variable cv;
  };
  std::mutex mu_;
  uint64_t published_ = 0;  // counts every publish, of any run
  std::unordered_map<std::string, Watch> watches_;  // runs a stream waits on
  bool closed_ = false;
};

}  // namespace orch::server
