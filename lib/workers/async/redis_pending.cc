// SPDX-License-Identifier: MIT
// RedisPendingSet: published-but-unanswered calls, kept in a Redis hash.
#include "workers/async/redis_pending.h"

#include <cstdlib>
#include <vector>

namespace orch::internal {

Status RedisPendingSet::ensure_loaded(RedisClient& client, int64_t now_ms) {
  std::lock_guard<std::mutex> load_lock(load_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (loaded_) return Status();
  }
  ORCH_ASSIGN_OR_RETURN(RedisValue all, client.command({"HGETALL", key_}));
  if (all.is_error()) return Status::unavailable("redis: HGETALL " + key_ + " failed: " + all.str);
  std::vector<std::string> live;
  std::vector<std::string> stale;
  for (size_t i = 0; i + 1 < all.elements.size(); i += 2) {
    const std::string& id = all.elements[i].str;
    int64_t at = std::strtoll(all.elements[i + 1].str.c_str(), nullptr, 10);
    (now_ms - at > ttl_ms_ ? stale : live).push_back(id);
  }
  if (!stale.empty()) {
    std::vector<std::string> del = {"HDEL", key_};
    del.insert(del.end(), stale.begin(), stale.end());
    ORCH_ASSIGN_OR_RETURN(RedisValue ignored, client.command(del));
    (void)ignored;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (std::string& id : live) ids_.insert(std::move(id));
  loaded_ = true;
  return Status();
}

bool RedisPendingSet::contains(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_.count(id) != 0;
}

void RedisPendingSet::added(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ids_.insert(id);
}

void RedisPendingSet::removed(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ids_.erase(id);
}

}  // namespace orch::internal
