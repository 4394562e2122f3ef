// SPDX-License-Identifier: MIT
#include "store/postgres/pg_followers.h"

#include <chrono>

namespace orch::postgres {

bool FollowedRuns::announced(std::string_view run_id) const {
  std::shared_ptr<const std::unordered_set<std::string>> runs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!loaded_) return true;
    runs = runs_;
  }
  return !runs->empty() && runs->count(std::string(run_id)) > 0;
}

std::vector<std::string> FollowedRuns::replace(const std::vector<Value>& records, int64_t now_ms) {
  auto runs = std::make_shared<std::unordered_set<std::string>>();
  std::vector<std::string> stale;
  for (const Value& record : records) {
    const int64_t until = record["until_ms"].get_int(0);
    if (until < now_ms) {
      // A watch that stopped renewing (its process died): gone a while, its
      // record can go too. Recently expired ones stay (clocks differ).
      if (until < now_ms - kFollowTtlMs && record["id"].is_string()) stale.push_back(record["id"].as_string());
      continue;
    }
    if (!record["runs"].is_array()) continue;
    for (const Value& run : record["runs"].as_array()) {
      if (run.is_string()) runs->insert(run.as_string());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (watches_ > 0) {
    runs_ = std::move(runs);
    loaded_ = true;
  }
  return stale;
}

void FollowedRuns::watch_started() {
  std::lock_guard<std::mutex> lock(mu_);
  ++watches_;
}

void FollowedRuns::watch_stopped() {
  std::lock_guard<std::mutex> lock(mu_);
  // No watch hears of new follows any more: the set would go stale.
  if (--watches_ == 0) loaded_ = false;
}

FollowingWatch::FollowingWatch(std::unique_ptr<StoreWatch> inner, Publish publish, std::function<void()> on_stop)
    : inner_(std::move(inner)), publish_(std::move(publish)), on_stop_(std::move(on_stop)) {
  renewer_ = std::thread([this] { renew_loop(); });
}

FollowingWatch::~FollowingWatch() {
  bool followed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    followed = !followed_.empty();
  }
  wake_.notify_all();
  renewer_.join();
  if (followed) {
    std::lock_guard<std::mutex> publishing(publish_mu_);
    publish_({});  // this watch follows nothing any more
  }
  inner_.reset();
  if (on_stop_) on_stop_();
}

void FollowingWatch::follow(const std::string& run_id) {
  std::lock_guard<std::mutex> publishing(publish_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  if (++followed_[run_id] == 1) publish_now(lock);
}

void FollowingWatch::unfollow(const std::string& run_id) {
  std::lock_guard<std::mutex> publishing(publish_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  auto found = followed_.find(run_id);
  if (found == followed_.end()) return;
  if (--found->second > 0) return;
  followed_.erase(found);
  publish_now(lock);
}

// REQUIRES: publish_mu_ held, and mu_ through `lock` (released here).
void FollowingWatch::publish_now(std::unique_lock<std::mutex>& lock) {
  std::vector<std::string> runs;
  runs.reserve(followed_.size());
  for (const auto& [run, count] : followed_) runs.push_back(run);
  lock.unlock();
  publish_(runs);
}

void FollowingWatch::renew_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (wake_.wait_for(lock, std::chrono::milliseconds(kFollowRenewMs), [this] { return stopping_; })) return;
    if (followed_.empty()) continue;
    lock.unlock();
    {
      std::lock_guard<std::mutex> publishing(publish_mu_);
      std::unique_lock<std::mutex> relock(mu_);
      if (!stopping_ && !followed_.empty()) publish_now(relock);
    }
    lock.lock();
  }
}

}  // namespace orch::postgres
