// SPDX-License-Identifier: MIT
//
// RedisPendingSet: the calls published through one Redis broker and not yet
// answered, kept in the broker itself (hash `orch:pending:<instance>`, field =
// correlation id, value = wall ms when published) and mirrored in memory. A
// restarted orch loads it once to know which requests are already queued for
// a worker, so it waits for their replies instead of publishing them again.
//
// Thread-safety: every method may be called from any thread; ensure_loaded()
// runs the load once, on whichever thread asks first.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_set>

#include "orch/status.h"
#include "workers/async/redis_client.h"

namespace orch::internal {

class RedisPendingSet {
 public:
  RedisPendingSet(std::string key, int64_t ttl_ms) : key_(std::move(key)), ttl_ms_(ttl_ms) {}

  const std::string& key() const { return key_; }
  // HGETALL once; entries older than the TTL are deleted.
  Status ensure_loaded(RedisClient& client, int64_t now_ms);
  bool contains(const std::string& id) const;
  // Mirror of an HSET / HDEL the caller sent.
  void added(const std::string& id);
  void removed(const std::string& id);

 private:
  const std::string key_;
  const int64_t ttl_ms_;
  mutable std::mutex mu_;
  std::mutex load_mu_;
  bool loaded_ = false;
  std::unordered_set<std::string> ids_;
};

}  // namespace orch::internal
