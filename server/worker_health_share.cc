// SPDX-License-Identifier: MIT
#include "worker_health_share.h"

#include <algorithm>
#include <chrono>

#include "log/log.h"

namespace orch::server {
namespace {

constexpr const char* kLatestRound = "latest";
// A stored round lists at most this many workers: the record is ours, but a
// database is shared and a damaged one must not make us loop for long.
constexpr size_t kMaxResultsPerRound = 100000;

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

WorkerHealthShare::WorkerHealthShare(std::shared_ptr<Store> store, std::string owner_id, int64_t interval_ms)
    : store_(std::move(store)),
      owner_id_(std::move(owner_id)),
      // Two rounds: one late round (a slow probe, a busy machine) does not
      // hand the lease to another instance; a dead holder's lease runs out
      // within two intervals.
      lease_ms_(2 * std::max<int64_t>(interval_ms, 1)) {}

bool WorkerHealthShare::may_probe() {
  Result<bool> mine = store_->claim_singleton(kWorkerHealthSingleton, owner_id_, lease_ms_);
  if (!mine.ok()) {
    // Not knowing who holds it, probe nothing: the holder (or, once its
    // lease ran out, whoever reaches the database) does.
    log(LogLevel::kWarn, "workers.health_lease_failed", {{"error", mine.status().message()}});
    return false;
  }
  if (*mine) rounds_probed_.fetch_add(1, std::memory_order_relaxed);
  return *mine;
}

void WorkerHealthShare::publish(const std::vector<WorkerHealth>& results) {
  int64_t round = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    round = next_round_++;
  }
  Value list = Value::array();
  for (const WorkerHealth& r : results) {
    Value item = Value::object({{"worker_id", r.worker_id}, {"healthy", r.health.ok()}});
    if (!r.health.ok()) item.set("error", r.health.message());
    list.push_back(std::move(item));
  }
  Value record = Value::object({{"id", kLatestRound},
                                {"owner", owner_id_},
                                {"round", static_cast<long long>(round)},
                                {"checked_at_ms", static_cast<long long>(wall_now_ms())},
                                {"results", std::move(list)}});
  Status put = store_->put_host_record(kWorkerHealthCollection, kLatestRound, record);
  if (!put.ok()) log(LogLevel::kWarn, "workers.health_share_failed", {{"error", put.message()}});
}

void WorkerHealthShare::apply_new(WorkerRegistry& registry) {
  Result<std::vector<Value>> records = store_->list_host_records(kWorkerHealthCollection);
  if (!records.ok()) {
    log(LogLevel::kWarn, "workers.health_read_failed", {{"error", records.status().message()}});
    return;
  }
  for (const Value& record : *records) {
    if (record["id"].get_string("") != kLatestRound) continue;
    const std::string owner = record["owner"].get_string("");
    if (owner.empty() || owner == owner_id_) continue;  // our own round is in our registry already
    const std::string key = owner + " " + std::to_string(record["round"].get_int(0));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (key == last_applied_) continue;  // a notification for a round we applied
      last_applied_ = key;
    }
    const Value& results = record["results"];
    if (!results.is_array()) continue;
    const size_t n = std::min(results.size(), kMaxResultsPerRound);
    for (size_t i = 0; i < n; ++i) {
      const Value& item = *results.at(i);
      WorkerHealth health;
      health.worker_id = item["worker_id"].get_string("");
      if (health.worker_id.empty()) continue;
      if (!item["healthy"].get_bool(false)) {
        health.health = Status::unavailable(item["error"].get_string("unhealthy"));
      }
      (void)registry.apply_health(health);  // NotFound: a worker this instance does not have
    }
    rounds_applied_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace orch::server
