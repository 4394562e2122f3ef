// SPDX-License-Identifier: MIT
//
// BrokerSessions<Session>: the one session (connection and its threads) per
// broker ("host:port") of an asynchronous protocol (mqtt, redis_stream),
// counted by the workers that use it, so the last of them to go releases it
// (WorkerProtocol::attach/detach).
//
// A protocol that a host drives directly, without a registry, never sees
// attach(): a session then lives until close(). Once any worker was attached,
// a session is only opened for a broker that has a user, so a late call or
// health probe of a worker already removed cannot open one nobody would close.
//
// Sessions handed back by detach() and close() are the caller's to stop,
// outside any lock (stopping joins threads).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "workers/async/async_wire.h"
#include "orch/worker_registry.h"

namespace orch::internal {

template <typename Session>
class BrokerSessions {
 public:
  // One more worker uses `endpoint`.
  void attach(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    managed_ = true;
    ++users_[endpoint];
  }

  // One worker fewer; the session to stop when that was the last one.
  std::shared_ptr<Session> detach(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    auto users = users_.find(endpoint);
    if (users == users_.end() || --users->second > 0) return nullptr;
    users_.erase(users);
    auto it = sessions_.find(endpoint);
    if (it == sessions_.end()) return nullptr;
    std::shared_ptr<Session> gone = std::move(it->second);
    sessions_.erase(it);
    return gone;
  }

  // The session of `endpoint`, made by `make()` on first use; null once
  // closed, or when no worker uses the broker (see above).
  template <typename Make>
  std::shared_ptr<Session> get(const std::string& endpoint, Make make) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || (managed_ && users_.count(endpoint) == 0)) return nullptr;
    std::shared_ptr<Session>& slot = sessions_[endpoint];
    if (!slot) slot = make();
    return slot;
  }

  // The session of `endpoint` if there is one.
  std::shared_ptr<Session> find(const std::string& endpoint) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(endpoint);
    return it == sessions_.end() ? nullptr : it->second;
  }

  std::vector<std::shared_ptr<Session>> all() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<Session>> out;
    for (const auto& [endpoint, session] : sessions_) out.push_back(session);
    return out;
  }

  // No session is opened any more; the open ones, to stop.
  std::vector<std::shared_ptr<Session>> close() {
    std::vector<std::shared_ptr<Session>> out = all();
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    sessions_.clear();
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::map<std::string, size_t> users_;  // workers per endpoint
  bool managed_ = false;                 // attach() was called
  bool closed_ = false;
};

// WorkerProtocol::attach of a broker protocol: counts `worker` as a user of
// the broker its `scheme://` URL names.
template <typename Session>
void attach_worker(BrokerSessions<Session>& sessions, const WorkerInfo& worker, std::string_view scheme,
                   int default_port) {
  Result<BrokerTarget> target = parse_broker_url(worker.url, scheme, default_port);
  if (target.ok()) sessions.attach(target->endpoint());
}

// WorkerProtocol::detach of a broker protocol: the broker's last worker stops
// its session (Session::stop() joins its threads, closes its sockets).
template <typename Session>
void detach_worker(BrokerSessions<Session>& sessions, const WorkerInfo& worker, std::string_view scheme,
                   int default_port) {
  Result<BrokerTarget> target = parse_broker_url(worker.url, scheme, default_port);
  if (!target.ok()) return;
  if (std::shared_ptr<Session> gone = sessions.detach(target->endpoint())) gone->stop();
}

}  // namespace orch::internal
