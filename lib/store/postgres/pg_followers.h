// SPDX-License-Identifier: MIT
//
// Announcing only the runs someone follows (PostgresStoreOptions::
// announce_followed_only). Every write of a run's events is otherwise
// announced with NOTIFY, and PostgreSQL delivers each notification to every
// listening instance: with three instances that was ~5% of the cluster's
// throughput, spent mostly for runs no other instance streams.
//
// A watch that wants a run's events follows it (StoreWatch::follow). Each
// watch publishes the runs it follows as one host record of collection
// kFollowersCollection, {"id", "runs": [...], "until_ms"}, renewed every
// kFollowRenewMs while it follows any (a watch whose process died stops
// counting at until_ms). Every store with a watch of its own reloads the
// union of those records when that collection changes, and announces a
// write when one of its runs is in it. A store without a watch does not know
// who follows, so it announces every run.
//
// Thread-safety: FollowedRuns and FollowingWatch are thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "orch/store.h"

namespace orch::postgres {

inline constexpr const char* kFollowersCollection = "orch.followers";
// How long a follow record counts after it was written, and how often a
// watch that follows runs writes its record again.
inline constexpr int64_t kFollowTtlMs = 60000;
inline constexpr int64_t kFollowRenewMs = 20000;

// The followed runs, as this store last read them.
class FollowedRuns {
 public:
  // Whether a write of `run_id` is announced: always while no watch of this
  // store keeps the set up to date.
  bool announced(std::string_view run_id) const;
  // The union of `records`' runs (those not expired at now_ms). Returns the
  // ids of records expired long ago, for the caller to delete.
  std::vector<std::string> replace(const std::vector<Value>& records, int64_t now_ms);
  // A watch of this store started (its first replace() comes next) or stopped.
  void watch_started();
  void watch_stopped();

 private:
  mutable std::mutex mu_;
  int watches_ = 0;
  bool loaded_ = false;  // replace() ran since the first watch started
  std::shared_ptr<const std::unordered_set<std::string>> runs_ = std::make_shared<std::unordered_set<std::string>>();
};

// A StoreWatch that also publishes the runs it follows. `publish` writes
// (a non-empty list) or deletes (an empty one) this watch's record; it is
// called with the list whenever it changes and every kFollowRenewMs while
// it is not empty, never twice at once. `on_stop` runs as the watch goes.
class FollowingWatch final : public StoreWatch {
 public:
  using Publish = std::function<void(const std::vector<std::string>& runs)>;
  FollowingWatch(std::unique_ptr<StoreWatch> inner, Publish publish, std::function<void()> on_stop);
  ~FollowingWatch() override;

  void follow(const std::string& run_id) override;
  void unfollow(const std::string& run_id) override;

 private:
  void publish_now(std::unique_lock<std::mutex>& lock);
  void renew_loop();

  std::unique_ptr<StoreWatch> inner_;
  Publish publish_;
  std::function<void()> on_stop_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::unordered_map<std::string, int> followed_;  // run id -> streams following it
  std::mutex publish_mu_;                          // one publish at a time, in order
  bool stopping_ = false;
  std::thread renewer_;
};

}  // namespace orch::postgres
