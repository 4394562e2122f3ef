// SPDX-License-Identifier: MIT
// The database stores' cache of each run's latest checkpoint document.
#include "store/document_cache.h"

#include <utility>

namespace orch::checkpoint_codec {

bool DocumentCache::get(const std::string& run_id, CachedDocument* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(run_id);
  if (it == entries_.end()) return false;
  *out = it->second;
  return true;
}

void DocumentCache::put(const std::string& run_id, CachedDocument entry) {
  if (capacity_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  // Evicting an arbitrary run is fine: a miss costs one chain read.
  if (entries_.size() >= capacity_ && entries_.find(run_id) == entries_.end()) entries_.erase(entries_.begin());
  entries_[run_id] = std::move(entry);
}

void DocumentCache::forget(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(run_id);
}

void DocumentCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
}

size_t DocumentCache::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace orch::checkpoint_codec
