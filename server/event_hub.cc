// SPDX-License-Identifier: MIT
#include "event_hub.h"

namespace orch::server {

void EventHub::publish(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++published_;
  auto it = watches_.find(run_id);
  if (it == watches_.end()) return;  // nobody is waiting on this run
  it->second.epoch = published_;
  it->second.cv.notify_all();
}

uint64_t EventHub::published() {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

uint64_t EventHub::epoch(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watches_.find(run_id);
  return it == watches_.end() ? published_ : it->second.epoch;
}

void EventHub::wait(const std::string& run_id, uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  // A watch made now starts at the current count: if anything was published
  // since `seen` (this run's event among it, perhaps), the wait ends at once.
  auto [it, inserted] = watches_.try_emplace(run_id);
  Watch& watch = it->second;
  if (inserted) watch.epoch = published_;
  ++watch.waiters;
  watch.cv.wait_for(lock, timeout, [&] { return watch.epoch != seen || closed_; });
  if (--watch.waiters == 0) watches_.erase(run_id);
}

void EventHub::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (auto& [run_id, watch] : watches_) watch.cv.notify_all();
}

bool EventHub::closed() {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

int EventHub::waiting(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watches_.find(run_id);
  return it == watches_.end() ? 0 : it->second.waiters;
}

}  // namespace orch::server
