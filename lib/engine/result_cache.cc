// SPDX-License-Identifier: MIT
#include "engine/result_cache.h"

namespace orch::internal {

std::optional<NodeOutcome> ResultCache::get(const std::string& key, SteadyTime now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    lru_.erase(it->second.recency);
    entries_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.recency);
  return it->second.outcome;
}

void ResultCache::put(const std::string& key, NodeOutcome outcome, SteadyTime expires) {
  if (capacity_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    it->second.outcome = std::move(outcome);
    it->second.expires = expires;
    lru_.splice(lru_.begin(), lru_, it->second.recency);
    return;
  }
  if (entries_.size() >= capacity_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  entries_.emplace(key, Entry{std::move(outcome), expires, lru_.begin()});
}

size_t ResultCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace orch::internal
