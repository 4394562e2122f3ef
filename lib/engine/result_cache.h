// SPDX-License-Identifier: MIT
//
// ResultCache: node results kept for a node's cache_ttl_ms, keyed by what the
// call was (workflow, version, node, prompt, worker tags). Bounded: past
// `capacity` entries the least recently used one goes, so distinct prompts
// cannot grow it without end.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "engine/node_outcome.h"
#include "orch/clock.h"

namespace orch::internal {

class ResultCache {
 public:
  explicit ResultCache(size_t capacity) : capacity_(capacity) {}

  // The live entry for `key`, if any (an expired one is dropped).
  std::optional<NodeOutcome> get(const std::string& key, SteadyTime now);
  void put(const std::string& key, NodeOutcome outcome, SteadyTime expires);
  size_t size() const;

 private:
  struct Entry {
    NodeOutcome outcome;
    SteadyTime expires;
    std::list<std::string>::iterator recency;  // position in lru_
  };
  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recently used first
};

}  // namespace orch::internal
