// SPDX-License-Identifier: MIT
//
// LoopbackWorker: the webhook worker of bench_server. A minimal HTTP/1.1
// keep-alive server on Asio with one event-loop thread, so the harness takes
// little of the CPU it shares with the server it measures (a thread-per-
// connection server here took a quarter of the machine, and its thread
// switches, from orch). It answers every request with {"response":"ok"},
// after `delay` when that is not zero, and reports each request's body with
// when it arrived (fully read) and when it was answered.
//
// Not a general server: no chunked bodies, no pipelining, no TLS; it speaks
// exactly what orch's webhook client sends.
//
// Thread-safety: `on_request` runs on the event-loop thread. The destructor
// stops the loop and joins it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace orch::bench {

class LoopbackWorker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using OnRequest = std::function<void(const std::string& body, TimePoint arrived, TimePoint answered)>;

  LoopbackWorker(std::chrono::milliseconds delay, OnRequest on_request);
  ~LoopbackWorker();
  LoopbackWorker(const LoopbackWorker&) = delete;
  LoopbackWorker& operator=(const LoopbackWorker&) = delete;

  int port() const { return port_; }

 private:
  struct Loop;
  std::unique_ptr<Loop> loop_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace orch::bench
