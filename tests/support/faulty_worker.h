// SPDX-License-Identifier: MIT
//
// FaultyWorker: a webhook worker on 127.0.0.1 (random port) written on raw
// POSIX sockets, for the faults a well-behaved HTTP server library cannot
// produce: a connection reset, a truncated body, a body trickled a few bytes at
// a time, a close without any answer. It also answers correctly, with HTTP
// 500/503, with a malformed JSON body, or never (hang).
//
// Each connection gets a thread. It reads a request (headers and a
// Content-Length body), picks a fault (the scripted ones first, then a draw
// from a seeded RNG over the configured weights) and acts it out. Connections
// whose fault leaves them usable stay open for the next request (HTTP/1.1
// keep-alive) until they are idle for `keep_alive_ms`. A correct reply is the
// webhook shape FakeWorker sends: {"response":"echo: <prompt>"}.
//
// stop() (and the destructor) wakes every wait at once, closes every
// connection and joins the threads.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

namespace orch::testing {

enum class Fault {
  kOk,           // 200 and a correct webhook reply
  kHttp500,      // 500 with a JSON error body
  kHttp503,      // 503 with a JSON error body
  kHang,         // no answer until the client gives up or stop()
  kMalformed,    // 200 and a body that is not JSON
  kTruncated,    // Content-Length larger than the bytes sent, then close
  kTrickle,      // the correct reply a few bytes at a time, done in ~100 ms
  kSlowTrickle,  // a few bytes at a time for `slow_trickle_ms` before the reply
  kReset,        // RST (SO_LINGER {1,0} and close) right after the request
  kClose,        // close without any answer
};
constexpr size_t kFaultKinds = 10;

// "ok", "http_500", "http_503", "hang", "malformed", "truncated", "trickle",
// "slow_trickle", "reset", "close".
const char* fault_name(Fault fault);

struct FaultyWorkerOptions {
  uint64_t seed = 1;
  // Relative weights of the draw, indexed by Fault. Default: always kOk.
  std::array<double, kFaultKinds> weights{{1}};
  // kTrickle: `trickle_chunk` bytes, then a pause of `trickle_pause_ms`.
  size_t trickle_chunk = 4;
  int64_t trickle_pause_ms = 10;
  // kSlowTrickle: one byte of leading whitespace every `slow_trickle_pause_ms`
  // for `slow_trickle_ms`, then the reply. Longer than any deadline in tests.
  int64_t slow_trickle_pause_ms = 50;
  int64_t slow_trickle_ms = 30000;
  // A kept-alive connection idle this long is closed.
  int64_t keep_alive_ms = 1000;
};

class FaultyWorker {
 public:
  explicit FaultyWorker(FaultyWorkerOptions options = {});
  ~FaultyWorker();
  FaultyWorker(const FaultyWorker&) = delete;
  FaultyWorker& operator=(const FaultyWorker&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>/webhook"
  std::string url() const;

  // The next requests get these faults, in order; then the weighted draw.
  void push(Fault fault);

  // Requests read (each got exactly one fault).
  uint64_t calls() const;
  uint64_t injected(Fault fault) const;
  std::array<uint64_t, kFaultKinds> injected() const;
  // Connections accepted and not yet closed.
  int open_connections() const;
  // Waits until `n` requests were read; false on timeout.
  bool wait_for_calls(uint64_t n, std::chrono::milliseconds timeout) const;
  // Waits until at most `n` connections are open; false on timeout.
  bool wait_for_open_at_most(int n, std::chrono::milliseconds timeout) const;

  // Ends every connection and the accept thread; idempotent.
  void stop();

 private:
  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  enum class Wait { kReady, kTimeout, kStopped };

  void accept_loop();
  void serve(int fd);
  // Acts out `fault`; true when the connection can take another request.
  bool answer(int fd, Fault fault, const std::string& request_body);
  Fault next_fault();
  Wait wait_readable(int fd, int64_t timeout_ms) const;
  // Sleeps `ms` unless stop() comes first (then false).
  bool pause(int64_t ms) const;

  const FaultyWorkerOptions options_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};  // readable once stop() was called
  int port_ = 0;
  std::thread accept_thread_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<Fault> script_;
  std::mt19937_64 rng_;
  std::discrete_distribution<int> draw_;
  std::array<uint64_t, kFaultKinds> injected_{};
  uint64_t calls_ = 0;
  int open_ = 0;
  bool stopped_ = false;
  std::list<Connection> connections_;  // accept thread only, until stop()
};

}  // namespace orch::testing
