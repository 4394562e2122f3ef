// SPDX-License-Identifier: MIT
#include "workflow_cache.h"

namespace orch::server {

std::shared_ptr<const WorkflowCache::Entry> WorkflowCache::make(const Value& definition) {
  auto entry = std::make_shared<Entry>();
  entry->definition = definition;
  entry->issues = validate_workflow(definition);
  if (workflow_is_valid(entry->issues)) entry->workflow = parse_workflow(definition);
  return entry;
}

std::shared_ptr<const WorkflowCache::Entry> WorkflowCache::get(const std::string& id, const Value& definition) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second->definition == definition) return it->second;
  }
  // Made outside the lock: two threads may both make one, and either is right.
  std::shared_ptr<const Entry> entry = make(definition);
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.size() >= kMaxEntries && entries_.find(id) == entries_.end()) entries_.clear();
  entries_[id] = entry;
  return entry;
}

}  // namespace orch::server
