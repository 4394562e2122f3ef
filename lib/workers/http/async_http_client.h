// SPDX-License-Identifier: MIT
//
// AsyncHttpClient: event-driven HTTP/1.1 calls to workers over plain http://,
// on a standalone-Asio event loop run by a few threads. No thread waits for a
// worker: a call is a small state machine (connect, write, read, parse) whose
// steps run when its socket is ready, so thousands of calls in flight need
// no more threads than the loop has.
//
//   - Connections are pooled per origin and kept alive: a call takes an idle
//     connection of its origin (one the worker has closed, or that holds
//     stray bytes, is dropped first) or opens one; after a complete response
//     that allows it (no `Connection: close`, a delimited body, nothing more
//     sent) the connection goes back to the pool, up to max_idle_per_origin.
//     No pipelining: a connection carries one call at a time (workers, and
//     cpp-httplib servers among them, do not all answer pipelined requests).
//   - Each call has a deadline, an asio::steady_timer (and, when the clock is
//     not the system clock, a timer on that clock too): when it fires the
//     socket is closed and the call fails DeadlineExceeded "worker did not
//     answer within N ms". cancel(call_id) closes it the same way (Cancelled).
//   - Errors read as those of the blocking transport (http_transport.h):
//     Unavailable "HTTP request failed: could not connect | connection lost
//     while sending the request | connection lost while reading the response
//     | malformed response: ... (origin)"; InvalidArgument for a bad URL or a
//     host the policy refuses; ResourceExhausted for a response over the
//     limits (HttpResponseLimits: 64 KiB of headers, 100 headers, 16 MiB of
//     body by default).
//   - A call on a reused connection that breaks while its request is being
//     written (the worker closed it just then) is sent once more on a new
//     connection; after the request is out, only a GET is (the node's retry
//     policy decides for a POST).
//   - Redirects are not followed: a 3xx is the answer, as before.
//   - Host names are resolved (and checked against the host policy, as
//     check_resolved_host does) on a small pool of threads, since the system
//     resolver blocks; an IP literal connects at once.
//
// `done` runs on a loop thread, on the call's strand, once per call. It may
// send further calls. It should not block: the protocols hand the reply on to
// a call thread (http_worker_protocols.cc), since handling one may wait for a
// store commit.
//
// Only http://: the https origins go through the blocking transport.
//
// Ownership and thread-safety: every method may be called from any thread.
// The destructor cancels the calls in flight (their `done` runs, Cancelled),
// and joins the loop threads (detaches the current one when a `done` destroys
// the last owner).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "orch/clock.h"
#include "orch/export.h"
#include "orch/host_policy.h"
#include "orch/status.h"
#include "workers/http/http_response_parser.h"
#include "workers/http/http_transport.h"
#include "workers/worker_wire.h"

namespace orch::internal {

struct AsyncHttpClientOptions {
  std::shared_ptr<Clock> clock;  // deadlines; default Clock::system()
  size_t threads = 2;            // running the event loop
  size_t max_idle_per_origin = 64;
  HostPolicy policy;
  HttpResponseLimits limits;
};

class ORCH_EXPORT AsyncHttpClient {  // exported for its tests (not public API)
 public:
  using Done = std::function<void(Result<HttpResponse>)>;

  explicit AsyncHttpClient(AsyncHttpClientOptions options);
  ~AsyncHttpClient();
  AsyncHttpClient(const AsyncHttpClient&) = delete;
  AsyncHttpClient& operator=(const AsyncHttpClient&) = delete;

  // Sends `spec` (after `delay`, when not zero: an A2A poll) and calls `done`
  // with the response or the error. A call with a call_id is cancellable from
  // now on, its delay included.
  void send(HttpRequestSpec spec, Done done, std::chrono::milliseconds delay = std::chrono::milliseconds(0));
  void cancel(const std::string& call_id);

  struct Stats {
    uint64_t connections_opened = 0;  // TCP connections this client opened
    uint64_t connections_reused = 0;  // calls that went out on a pooled connection
    size_t idle = 0;                  // connections in the pool now
    size_t in_flight = 0;             // calls not finished
  };
  Stats stats() const;

  const std::shared_ptr<Clock>& clock() const { return clock_; }

 private:
  struct Impl;
  struct Call;
  std::shared_ptr<Clock> clock_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace orch::internal
