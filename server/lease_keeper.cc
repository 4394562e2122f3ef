// SPDX-License-Identifier: MIT
#include "lease_keeper.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "log/log.h"
#include "orch/id.h"
#include "orch/thread_guard.h"

namespace orch::server {
namespace {

// Runs taken over per round: a dead instance's runs move over a few rounds
// instead of in one burst that would starve this instance's own runs.
constexpr size_t kTakeoverBatch = 100;

}  // namespace

std::string new_instance_owner_id() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string("orch-serve:") + host + ":" + std::to_string(::getpid()) + ":" + new_uuid().substr(0, 8);
}

LeaseKeeper::LeaseKeeper(Store& store, Engine& engine, std::string owner_id, int64_t lease_ttl_ms)
    : store_(store), engine_(engine), owner_id_(std::move(owner_id)), lease_ttl_ms_(lease_ttl_ms),
      thread_([this] { loop(); }) {}

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

size_t LeaseKeeper::tick() {
  if (renewing_) {
    Result<int64_t> renewed = store_.renew_leases(owner_id_, lease_ttl_ms_);
    if (!renewed.ok()) {
      if (renewed.status().code() == StatusCode::kUnimplemented) renewing_ = false;
      log(LogLevel::kWarn, "lease.renew_failed", {{"owner", owner_id_}, {"error", renewed.status().message()}});
    }
  }
  if (!taking_over_) return 0;
  Result<size_t> taken = engine_.take_over_expired_runs(kTakeoverBatch);
  if (!taken.ok()) {
    if (taken.status().code() == StatusCode::kUnimplemented) taking_over_ = false;
    log(LogLevel::kWarn, "lease.takeover_failed", {{"owner", owner_id_}, {"error", taken.status().message()}});
    return 0;
  }
  if (*taken > 0) {
    log(LogLevel::kInfo, "lease.takeover", {{"owner", owner_id_}, {"runs", static_cast<long long>(*taken)}});
  }
  return *taken;
}

void LeaseKeeper::loop() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(lease_ttl_ms_ / 3, 10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    run_guarded("lease keeper", [this] { tick(); });
    lock.lock();
  }
}

}  // namespace orch::server
