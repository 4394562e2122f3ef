// SPDX-License-Identifier: MIT
//
// WorkerHealthShare: worker health probes once across the orch serve
// instances sharing a database (PostgreSQL, issue #21), with every instance
// seeing their results.
//
//  - may_probe() is the registry's health_check_gate: true while this
//    instance holds the store's "worker_health" singleton lease
//    (Store::claim_singleton, two probe intervals long, renewed each round).
//    The others skip their rounds; when the holder dies or stalls, one of
//    them takes the lease over once it runs out.
//  - publish() is the registry's on_health_checked: the holder writes each
//    round's results as one host record (collection "worker_health", id
//    "latest"), so a round costs one write and one notification.
//  - apply_new() runs on the other instances when that collection changes
//    (Store::watch_changes): a round they have not applied yet, written by
//    another instance, goes into their own registry (apply_health), so
//    their circuits open and close as if they had probed themselves.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "orch/store.h"
#include "orch/worker_registry.h"

namespace orch::server {

inline constexpr const char* kWorkerHealthCollection = "worker_health";
inline constexpr const char* kWorkerHealthSingleton = "worker_health";

class WorkerHealthShare {
 public:
  WorkerHealthShare(std::shared_ptr<Store> store, std::string owner_id, int64_t interval_ms);

  // True when this instance probes this round (it holds the lease now).
  bool may_probe();
  // Stores a round's results for the other instances. Logs a failure.
  void publish(const std::vector<WorkerHealth>& results);
  // Applies the stored round to `registry` when another instance wrote it
  // and it is new here. Workers this instance does not know are skipped.
  void apply_new(WorkerRegistry& registry);

  // Rounds this instance was let probe, and rounds of others it applied.
  uint64_t rounds_probed() const { return rounds_probed_.load(); }
  uint64_t rounds_applied() const { return rounds_applied_.load(); }

 private:
  std::shared_ptr<Store> store_;
  const std::string owner_id_;
  const int64_t lease_ms_;
  std::atomic<uint64_t> rounds_probed_{0};
  std::atomic<uint64_t> rounds_applied_{0};
  std::mutex mu_;
  int64_t next_round_ = 1;        // this instance's next round number
  std::string last_applied_;      // "<owner> <round>" of the last round applied
};

}  // namespace orch::server
