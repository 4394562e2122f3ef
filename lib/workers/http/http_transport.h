// SPDX-License-Identifier: MIT
//
// HttpTransport: blocking HTTP calls to workers with a deadline, run on a
// bounded thread pool, over pooled keep-alive connections.
//
// Each call borrows a connection (an httplib::Client) of its origin for its
// whole duration and returns it afterwards, so calls to one worker run in
// parallel without a lock around them. TCP_NODELAY is on. cancel() shuts the
// socket of a running call down, so a hung worker releases its thread as soon
// as the engine gives up on it.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workers/call_pool.h"
#include "workers/worker_wire.h"
#include "orch/clock.h"
#include "orch/host_policy.h"
#include "orch/status.h"
#include "orch/url.h"

namespace httplib {
class Client;
}

namespace orch::internal {

struct HttpRequestSpec {
  std::string method = "POST";  // "POST" (JSON body) or "GET"
  std::string url;              // http(s)://host[:port][/path]
  std::string body;
  std::string bearer_token;     // "Authorization: Bearer <token>" when not empty
  std::vector<std::pair<std::string, std::string>> headers;
  SteadyTime deadline;
  std::string call_id;          // for cancel(); empty: not cancellable
};

class HttpTransport {
 public:
  // `policy` is checked (host names resolved) before each new connection.
  HttpTransport(std::shared_ptr<Clock> clock, size_t max_threads, size_t max_idle_per_origin,
                HostPolicy policy = {});
  // Cancels running calls, runs the queued ones (they return Cancelled) and
  // joins the threads.
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Runs `task` on the pool. `call_id` (if not empty) becomes cancellable now,
  // before the task starts; the task must call forget(call_id) when its call
  // is over, before it reports the result.
  void run(const std::string& call_id, std::function<void()> task);
  void forget(const std::string& call_id);
  void cancel(const std::string& call_id);

  // One request, blocking until the response, the deadline or a cancel.
  // Errors: Unavailable (could not connect, connection lost), DeadlineExceeded,
  // Cancelled, InvalidArgument (bad URL, or a host the policy refuses).
  Result<HttpResponse> send(const HttpRequestSpec& spec);

  const std::shared_ptr<Clock>& clock() const { return clock_; }

 private:
  struct Active {
    httplib::Client* client = nullptr;  // while the request is on the wire
    bool cancelled = false;
  };

  // An idle pooled client for `origin`, else a new one; `*reused` says which.
  std::unique_ptr<httplib::Client> acquire(const std::string& origin, bool* reused = nullptr);
  // Always a new client (after a pooled connection turned out closed).
  std::unique_ptr<httplib::Client> acquire_fresh(const std::string& origin);
  void release(const std::string& origin, std::unique_ptr<httplib::Client> client);

  std::shared_ptr<Clock> clock_;
  size_t max_idle_;
  const HostPolicy policy_;

  std::mutex idle_mu_;
  std::map<std::string, std::vector<std::unique_ptr<httplib::Client>>> idle_;

  std::mutex active_mu_;
  std::map<std::string, Active> active_;
  bool shutting_down_ = false;  // guarded by active_mu_

  // Last member: destroyed (joined) first, while the rest is still alive.
  std::unique_ptr<CallPool> pool_;
};

}  // namespace orch::internal
