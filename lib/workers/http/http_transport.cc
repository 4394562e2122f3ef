// SPDX-License-Identifier: MIT
#include "workers/http/http_transport.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace orch::internal {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::microseconds;

constexpr milliseconds kMaxConnectTimeout{30000};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection: return "could not connect";
    case httplib::Error::ConnectionTimeout: return "connection timed out";
    case httplib::Error::Read: return "connection lost while reading the response";
    case httplib::Error::Write: return "connection lost while sending the request";
    case httplib::Error::SSLConnection: return "TLS handshake failed";
    case httplib::Error::SSLServerVerification: return "TLS certificate verification failed";
    default: return httplib::to_string(error);
  }
}

}  // namespace

HttpTransport::HttpTransport(std::shared_ptr<Clock> clock, size_t max_threads, size_t max_idle_per_origin,
                             HostPolicy policy)
    : clock_(std::move(clock)),
      max_idle_(max_idle_per_origin),
      policy_(std::move(policy)),
      pool_(std::make_unique<CallPool>(max_threads)) {}

HttpTransport::~HttpTransport() {
  {
    std::lock_guard<std::mutex> lock(active_mu_);
    shutting_down_ = true;
    for (auto& [id, active] : active_) {
      active.cancelled = true;
      if (active.client) active.client->stop();
    }
  }
  pool_.reset();
}

void HttpTransport::run(const std::string& call_id, std::function<void()> task) {
  if (!call_id.empty()) {
    std::lock_guard<std::mutex> lock(active_mu_);
    active_.emplace(call_id, Active());
  }
  pool_->post(std::move(task));
}

void HttpTransport::forget(const std::string& call_id) {
  if (call_id.empty()) return;
  std::lock_guard<std::mutex> lock(active_mu_);
  active_.erase(call_id);
}

void HttpTransport::cancel(const std::string& call_id) {
  std::lock_guard<std::mutex> lock(active_mu_);
  auto it = active_.find(call_id);
  if (it == active_.end()) return;
  it->second.cancelled = true;
  // Shuts the socket down under the request: the blocked read fails at once.
  if (it->second.client) it->second.client->stop();
}

std::unique_ptr<httplib::Client> HttpTransport::acquire(const std::string& origin, bool* reused) {
  if (reused) *reused = false;
  {
    std::lock_guard<std::mutex> lock(idle_mu_);
    auto it = idle_.find(origin);
    if (it != idle_.end() && !it->second.empty()) {
      std::unique_ptr<httplib::Client> client = std::move(it->second.back());
      it->second.pop_back();
      if (reused) *reused = true;
      return client;
    }
  }
  return acquire_fresh(origin);
}

std::unique_ptr<httplib::Client> HttpTransport::acquire_fresh(const std::string& origin) {
  auto client = std::make_unique<httplib::Client>(origin);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);
  client->set_follow_location(false);
  return client;
}

void HttpTransport::release(const std::string& origin, std::unique_ptr<httplib::Client> client) {
  std::lock_guard<std::mutex> lock(idle_mu_);
  auto& idle = idle_[origin];
  if (idle.size() < max_idle_) idle.push_back(std::move(client));
}

Result<HttpResponse> HttpTransport::send(const HttpRequestSpec& spec) {
  ORCH_ASSIGN_OR_RETURN(Url parts, parse_http_url(spec.url));
  const std::string origin = parts.origin();
  auto remaining = duration_cast<microseconds>(spec.deadline - clock_->steady_now());
  if (remaining.count() <= 0) return Status::deadline_exceeded("deadline passed before the worker was called");

  bool reused = false;
  std::unique_ptr<httplib::Client> client = acquire(origin, &reused);
  // A new connection resolves the host again: check where the name points now.
  if (!reused) ORCH_RETURN_IF_ERROR(check_resolved_host(policy_, parts.host));
  if (!client->is_valid()) return Status::invalid_argument("invalid worker url: " + spec.url);
  auto configure = [&](httplib::Client& c) {
    c.set_connection_timeout(std::min<microseconds>(remaining, kMaxConnectTimeout));
    c.set_read_timeout(remaining);
    c.set_write_timeout(remaining);
  };
  configure(*client);

  httplib::Headers headers;
  if (!spec.bearer_token.empty()) headers.emplace("Authorization", "Bearer " + spec.bearer_token);
  for (const auto& [name, value] : spec.headers) headers.emplace(name, value);

  // httplib's timeouts bound each wait on the socket, not the whole request: a
  // worker trickling its reply a few bytes at a time would hold the call past
  // its deadline. This timer cuts the connection at the deadline.
  struct Watchdog {
    std::mutex mu;
    httplib::Client* client = nullptr;
    bool fired = false;
  };
  auto watchdog = std::make_shared<Watchdog>();
  // Points cancel() and the watchdog at `c`; false when the call was cancelled.
  auto track = [&](httplib::Client* c) {
    if (!spec.call_id.empty()) {
      std::lock_guard<std::mutex> lock(active_mu_);
      auto it = active_.find(spec.call_id);
      if (c && (shutting_down_ || (it != active_.end() && it->second.cancelled))) return false;
      if (it != active_.end()) it->second.client = c;
    }
    std::lock_guard<std::mutex> lock(watchdog->mu);
    watchdog->client = c;
    return true;
  };
  if (!track(client.get())) return Status::cancelled("call cancelled");
  const Clock::TimerId timer = clock_->call_at(spec.deadline, [watchdog] {
    std::lock_guard<std::mutex> lock(watchdog->mu);
    watchdog->fired = true;
    if (watchdog->client) watchdog->client->stop();
  });
  // Socket timeouts run on real time, whatever clock the deadline came from.
  const auto start = std::chrono::steady_clock::now();
  auto perform = [&](httplib::Client& c) {
    return spec.method == "GET" ? c.Get(parts.target, headers)
                                : c.Post(parts.target, headers, spec.body, "application/json");
  };
  httplib::Result result = perform(*client);
  // httplib replaces a pooled connection the worker has closed before using it.
  // One that breaks while the request is being written did not deliver it: try
  // once more on a fresh connection. After the request was written the worker
  // may have read it, so a POST is not sent again here (the node's retry policy
  // decides); a GET (health probe) is.
  if (!result && reused &&
      (result.error() == httplib::Error::Write || (result.error() == httplib::Error::Read && spec.method == "GET")) &&
      std::chrono::steady_clock::now() - start < milliseconds(50) &&
      check_resolved_host(policy_, parts.host).ok()) {  // a new connection: see above
    std::unique_ptr<httplib::Client> fresh = acquire_fresh(origin);
    configure(*fresh);
    if (track(fresh.get())) {  // before the old client goes away
      client = std::move(fresh);
      result = perform(*client);
    }
  }
  clock_->cancel(timer);
  bool deadline_cut = false;
  {
    std::lock_guard<std::mutex> lock(watchdog->mu);
    watchdog->client = nullptr;
    deadline_cut = watchdog->fired;
  }
  bool cancelled = false;
  if (!spec.call_id.empty()) {
    std::lock_guard<std::mutex> lock(active_mu_);
    auto it = active_.find(spec.call_id);
    if (it != active_.end()) {
      it->second.client = nullptr;
      cancelled = it->second.cancelled;
    }
    cancelled = cancelled || shutting_down_;
  }
  if (cancelled) return Status::cancelled("call cancelled");
  if (!result && deadline_cut) {
    return Status::deadline_exceeded("worker did not answer within " +
                                     std::to_string(std::chrono::ceil<milliseconds>(remaining).count()) + " ms");
  }
  if (!result) {
    const httplib::Error error = result.error();
    // A socket wait may end a little before its timeout; allow for that.
    const auto elapsed = std::chrono::steady_clock::now() - start + milliseconds(20);
    if (error == httplib::Error::Canceled) return Status::cancelled("call cancelled");
    if ((error == httplib::Error::ConnectionTimeout || error == httplib::Error::Read ||
         error == httplib::Error::Write) && elapsed >= remaining) {
      // Rounded up: the deadline was set a moment before the call began, so a
      // 1500 ms timeout leaves 1499.x ms here and should still read 1500.
      return Status::deadline_exceeded("worker did not answer within " +
                                       std::to_string(std::chrono::ceil<milliseconds>(remaining).count()) + " ms");
    }
    return Status::unavailable("HTTP request failed: " + describe(error) + " (" + origin + ")");
  }
  HttpResponse response;
  response.status = result->status;
  response.body = std::move(result->body);
  response.headers.reserve(result->headers.size());
  for (const auto& [name, value] : result->headers) response.headers.emplace_back(lower(name), value);
  if (!deadline_cut) release(origin, std::move(client));  // else stop() may have shut its socket
  return response;
}

}  // namespace orch::internal
