// SPDX-License-Identifier: MIT
//
// BrokerUsers: how many workers use each broker ("host:port"), so that the
// protocol holding one connection per broker (mqtt, redis_stream) closes it
// when the last of them is removed (WorkerProtocol::attach/detach).
//
// A protocol that a host drives directly, without a registry, never sees
// attach(): it then keeps the old behaviour (a connection lives until the
// protocol is destroyed). Once any worker was attached, a connection is only
// opened for a broker that has a user, so a late call or health probe of a
// worker already removed cannot open one that nobody would close.
//
// Thread-safety: none; the owning protocol's lock guards it.
#pragma once

#include <cstddef>
#include <map>
#include <string>

namespace orch::internal {

class BrokerUsers {
 public:
  void attach(const std::string& endpoint) {
    managed_ = true;
    ++count_[endpoint];
  }

  // True when `endpoint` lost its last user: its connection should go.
  bool detach(const std::string& endpoint) {
    auto it = count_.find(endpoint);
    if (it == count_.end()) return false;
    if (--it->second > 0) return false;
    count_.erase(it);
    return true;
  }

  // Whether a connection to `endpoint` may be opened now.
  bool may_connect(const std::string& endpoint) const { return !managed_ || count_.count(endpoint) > 0; }

 private:
  std::map<std::string, size_t> count_;
  bool managed_ = false;
};

}  // namespace orch::internal
