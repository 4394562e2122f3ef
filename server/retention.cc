// SPDX-License-Identifier: MIT
#include "retention.h"

#include <algorithm>
#include <chrono>

#include "app.h"
#include "orch/thread_guard.h"

namespace orch::server {

RetentionSweeper::RetentionSweeper(App& app, int64_t retention_ms)
    : app_(app), retention_ms_(retention_ms), thread_([this] { loop(); }) {}

RetentionSweeper::~RetentionSweeper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

size_t RetentionSweeper::sweep() {
  // Once across the instances sharing a database: the one holding the
  // "retention" lease sweeps (it keeps it while it sweeps every interval;
  // another instance takes it two intervals after it stopped).
  auto mine = app_.store->claim_singleton("retention", app_.owner_id, 2 * interval_ms());
  if (!mine.ok() || !*mine) return 0;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  size_t removed = 0;
  for (RunStatus status : {RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kCancelled}) {
    RunFilter filter;
    filter.status = status;
    filter.limit = 1000;
    auto runs = app_.store->list_runs(filter);
    if (!runs.ok()) continue;
    for (const RunRecord& r : *runs) {
      int64_t ended = r.ended_at_ms ? r.ended_at_ms : r.updated_at_ms;
      if (now - ended >= retention_ms_ && app_.engine->delete_run(r.id).ok()) ++removed;
    }
  }
  return removed;
}

int64_t RetentionSweeper::interval_ms() const { return std::clamp<int64_t>(retention_ms_ / 4, 10, 3600 * 1000); }

void RetentionSweeper::loop() {
  const auto interval = std::chrono::milliseconds(interval_ms());
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval, [this] { return stop_; })) {
    lock.unlock();
    run_guarded("retention sweep", [this] { sweep(); });
    lock.lock();
  }
}

}  // namespace orch::server
