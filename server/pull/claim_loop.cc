// SPDX-License-Identifier: MIT
#include "pull/claim_loop.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include "orch/thread_guard.h"
#include "pull/upstream_view.h"
#include "pull/workspace.h"

namespace orch::server {

using Clock = std::chrono::steady_clock;

ClaimLoop::ClaimLoop(Deps deps) : d_(std::move(deps)) {
  for (const auto& [stage, limit] : d_.cfg.per_state) per_state_json_.set(stage, static_cast<long long>(limit));
}

void ClaimLoop::start_locked() {
  poll_thread_ = std::thread([this] { keep_running("tracker poll", &ClaimLoop::poll_loop); });
  live_thread_ = std::thread([this] { keep_running("tracker liveness", &ClaimLoop::liveness_loop); });
}

void ClaimLoop::join() {
  if (poll_thread_.joinable()) poll_thread_.join();
  if (live_thread_.joinable()) live_thread_.join();
}

void ClaimLoop::keep_running(const char* where, void (ClaimLoop::*loop)()) {
  while (!run_guarded(where, [&] { (this->*loop)(); })) {
    std::unique_lock<std::mutex> lock(d_.board.mu);
    if (d_.board.poll_cv.wait_for(lock, std::chrono::seconds(1), [this] { return d_.board.stopping; })) return;
  }
}

void ClaimLoop::join_finished(std::unique_lock<std::mutex>& lock) {
  if (d_.board.finished_threads.empty()) return;
  std::vector<std::thread> threads;
  threads.swap(d_.board.finished_threads);
  lock.unlock();
  for (std::thread& th : threads) th.join();
  lock.lock();
}

void ClaimLoop::poll_loop() {
  TaskBoard& b = d_.board;
  std::unique_lock<std::mutex> lock(b.mu);
  auto next_poll = Clock::now();
  for (;;) {
    b.poll_cv.wait_until(lock, next_poll, [&] { return b.stopping || b.refresh_requested || !b.finished_threads.empty(); });
    join_finished(lock);
    if (b.stopping) return;
    if (!b.refresh_requested && Clock::now() < next_poll) continue;
    b.refresh_requested = false;
    lock.unlock();
    // Reconcile first: a task cancelled upstream frees its slot for this round's claims.
    reconcile();
    // A full instance does not take the turn: one with room takes it over
    // once the lease of the last holder runs out.
    if (has_room() && (!d_.may_claim || d_.may_claim())) claim_all();
    lock.lock();
    next_poll = Clock::now() + std::chrono::milliseconds(d_.cfg.poll_interval_ms);
  }
}

// Heartbeats run on their own timer so that slow claims or task reads never
// delay them, and stalls are seen while a turn is still in flight.
void ClaimLoop::liveness_loop() {
  TaskBoard& b = d_.board;
  const int64_t stall_timeout = d_.cfg.stall_timeout_ms;
  std::unique_lock<std::mutex> lock(b.mu);
  while (!b.stopping) {
    const int64_t now = steady_ms();
    std::vector<std::shared_ptr<TrackedTask>> due;
    int64_t wake = now + 60000;
    for (auto& [id, t] : b.tasks) {
      if (t->heartbeat_due_ms <= now) {
        due.push_back(t);
      } else {
        wake = std::min(wake, t->heartbeat_due_ms);
      }
      if (t->state != TaskState::kSpawning && t->state != TaskState::kRunning) continue;
      int64_t last = t->activity_ms;
      if (t->agent) last = std::max(last, t->agent->last_activity_ms());
      if (now - last > stall_timeout) {
        b.abort_locked(*t, Abort::kStalled, "no activity for " + std::to_string(now - last) + " ms (stall_timeout_ms " +
                                                std::to_string(stall_timeout) + ")");
      } else {
        wake = std::min(wake, last + stall_timeout + 1);
      }
    }
    if (!due.empty()) {
      for (auto& t : due) t->heartbeat_due_ms = INT64_MAX;  // not again until this round answers
      lock.unlock();
      for (auto& t : due) heartbeat(t);
      lock.lock();
      continue;
    }
    b.live_dirty = false;
    b.live_cv.wait_until(lock, Clock::now() + std::chrono::milliseconds(std::max<int64_t>(wake - steady_ms(), 1)),
                         [&] { return b.stopping || b.live_dirty; });
  }
}

std::shared_ptr<const PipelineDef> ClaimLoop::find_def(const std::string& pipeline) const {
  for (const auto& d : d_.defs) {
    if (d->pipeline_id == pipeline) return d;
  }
  return nullptr;
}

template <typename Pred>
int64_t ClaimLoop::count_locked(Pred pred) const {
  int64_t n = 0;
  for (const auto& [id, t] : d_.board.tasks) n += pred(*t) ? 1 : 0;
  return n;
}

bool ClaimLoop::can_claim_locked(const std::string& pipeline, const std::string& role) const {
  if (static_cast<int64_t>(d_.board.tasks.size()) >= d_.cfg.max_concurrent_tasks) return false;
  if (auto it = d_.cfg.per_pipeline.find(pipeline); it != d_.cfg.per_pipeline.end()) {
    if (count_locked([&](const TrackedTask& t) { return t.pipeline_id == pipeline; }) >= it->second) return false;
  }
  if (auto it = d_.cfg.per_role.find(role); it != d_.cfg.per_role.end()) {
    if (count_locked([&](const TrackedTask& t) { return t.role == role; }) >= it->second) return false;
  }
  return true;
}

bool ClaimLoop::has_room() const {
  std::lock_guard<std::mutex> lock(d_.board.mu);
  return !d_.board.stopping && !d_.draining && !d_.stopping &&
         static_cast<int64_t>(d_.board.tasks.size()) < d_.cfg.max_concurrent_tasks;
}

void ClaimLoop::claim_all() {
  TaskBoard& b = d_.board;
  for (const auto& def : d_.defs) {
    for (const std::string& role : def->claim_roles) {
      // Up to the global limit per role per round, so capacity fills in one poll.
      for (int64_t n = 0; n < std::max<int64_t>(d_.cfg.max_concurrent_tasks, 1); ++n) {
        {
          std::lock_guard<std::mutex> lock(b.mu);
          if (b.stopping || d_.draining || d_.stopping || !can_claim_locked(def->pipeline_id, role)) break;
        }
        auto claim = d_.client.claim(d_.cfg.agent_id, role, d_.cfg.lease_ttl_ms, per_state_json_);
        if (!claim.ok()) {
          std::lock_guard<std::mutex> lock(b.mu);
          if (claim.status().message() != b.last_claim_error) tracker_log(claim.status().message());
          b.last_claim_error = claim.status().message();
          break;
        }
        {
          std::lock_guard<std::mutex> lock(b.mu);
          b.last_claim_error.clear();
        }
        if (!claim->has_value()) break;  // 204: nothing to do for this role
        admit(def, role, std::move(**claim));
      }
    }
  }
}

void ClaimLoop::release(const Claim& claim, const std::string& reason) {
  // NullTickets has no separate "release": failing the claim's run deletes
  // the lease, so the task is offered again at once instead of after the TTL.
  TrackerReply r = d_.client.fail(claim.run_id, claim.lease_token, "released by orch: " + reason, Value());
  tracker_log("released task " + claim.task_id + " (" + reason + ")" + (r.ok() ? "" : ": " + r.describe()));
  std::lock_guard<std::mutex> lock(d_.board.mu);
  ++d_.board.released;
}

void ClaimLoop::admit(const std::shared_ptr<const PipelineDef>& def, const std::string& role, Claim claim) {
  TaskBoard& b = d_.board;
  const TrackerConfig& cfg = d_.cfg;
  std::string reason;
  std::shared_ptr<const PipelineDef> use = def;
  std::unique_lock<std::mutex> lock(b.mu);
  const Value& task = claim.task;
  const std::string pipeline = task["pipeline_id"].get_string(def->pipeline_id);
  const std::string stage = task["stage"].get_string("");
  if (b.stopping || d_.stopping) {
    reason = "orch is shutting down";
  } else if (d_.draining) {
    reason = "orch is draining";
  } else if (b.tasks.count(claim.task_id)) {
    reason = "the task is already running on this orch";
  } else {
    // Claims are by role, so a task of another pipeline may come back; it
    // runs under that pipeline's workflow when this orch has one.
    if (pipeline != def->pipeline_id) {
      use = find_def(pipeline);
      if (!use || std::find(use->claim_roles.begin(), use->claim_roles.end(), role) == use->claim_roles.end()) {
        reason = "no pull-mode workflow for pipeline '" + pipeline + "' and role '" + role + "'";
      }
    }
    if (reason.empty()) {
      if (auto it = cfg.per_pipeline.find(pipeline);
          it != cfg.per_pipeline.end() &&
          count_locked([&](const TrackedTask& t) { return t.pipeline_id == pipeline; }) >= it->second) {
        reason = "per_pipeline limit of " + std::to_string(it->second) + " reached for " + pipeline;
      }
    }
    if (reason.empty()) {
      if (auto it = cfg.per_state.find(stage);
          it != cfg.per_state.end() &&
          count_locked([&](const TrackedTask& t) { return t.claimed_stage == stage; }) >= it->second) {
        reason = "per_state limit of " + std::to_string(it->second) + " reached for stage " + stage;
      }
    }
    if (reason.empty()) {
      auto name = WorkspaceManager::dir_name_for(claim.task_id);
      if (!name.ok()) reason = name.status().message();
    }
  }
  if (!reason.empty()) {
    lock.unlock();
    release(claim, reason);
    return;
  }
  auto t = std::make_shared<TrackedTask>();
  t->task_id = claim.task_id;
  t->pipeline_id = pipeline;
  t->role = role;
  t->def = use;
  t->execution = use->execution;
  t->tracker_run_id = claim.run_id;
  t->lease_id = claim.lease_id;
  t->lease_token = claim.lease_token;
  t->claimed_stage = stage;
  t->started_at_ms = wall_ms();
  t->task = claim.task;
  t->title = task["title"].get_string("");
  if (task["task_version"].is_int()) t->task_version = task["task_version"].as_int();
  t->attempt = ++b.attempts[t->task_id];
  t->max_turns = use->execution == "subprocess" ? use->max_turns.value_or(cfg.max_turns) : 1;
  t->activity_ms = steady_ms();
  t->last_activity_wall = t->started_at_ms;
  t->lease_expires_at_ms = claim.expires_at_ms;
  t->heartbeat_due_ms = steady_ms() + cfg.heartbeat_interval_ms;
  b.tasks[t->task_id] = t;
  b.wake_liveness_locked();
  tracker_log("claimed task " + t->task_id + " (pipeline " + pipeline + ", role " + role + ", stage " + stage +
              ", attempt " + std::to_string(t->attempt) + ")");
  d_.launch(t);
}

void ClaimLoop::heartbeat(const std::shared_ptr<TrackedTask>& t) {
  TaskBoard& b = d_.board;
  const TrackerReply r = d_.client.heartbeat(t->lease_id, t->lease_token);
  const std::string lost = "lease lost: heartbeat " + (r.ok() ? std::string("answer without expires_at_ms") : r.describe());
  {
    std::lock_guard<std::mutex> lock(b.mu);
    if (t->finished) return;
    const int64_t now = steady_ms();
    if (r.ok() && r.json["expires_at_ms"].is_int()) {
      t->lease_expires_at_ms = r.json["expires_at_ms"].as_int();
      ++t->heartbeats;
      t->heartbeat_due_ms = now + d_.cfg.heartbeat_interval_ms;
      return;
    }
    if (r.transient()) {
      // Keep the task: try again soon, and give up only once the lease has
      // really run out.
      t->heartbeat_due_ms = now + std::min<int64_t>(d_.cfg.heartbeat_interval_ms, 1000);
      if (t->lease_expires_at_ms > 0 && wall_ms() >= t->lease_expires_at_ms) {
        b.abort_locked(*t, Abort::kLeaseLost, "lease expired: the last heartbeats got " + r.describe());
      }
      return;
    }
    t->heartbeat_due_ms = INT64_MAX;
    if (r.ok() || t->abort != Abort::kNone || !compared_with_upstream(t->state)) {
      b.abort_locked(*t, Abort::kLeaseLost, lost);
      return;
    }
  }
  // A refused heartbeat may only mean that the task left its stage through
  // this claim: an agent that transitions its task itself ends the claim's
  // run, and with it the lease. Judge the task as the next reconcile would,
  // so the outcome does not depend on which of the two came first.
  const TrackerReply fresh = d_.client.get_task(t->task_id);
  std::lock_guard<std::mutex> lock(b.mu);
  if (t->finished || t->abort != Abort::kNone) return;
  if (fresh.ok() && fresh.json.is_object() && fresh.json["stage"].get_string(t->claimed_stage) != t->claimed_stage) {
    apply_upstream_view_locked(b, d_.cfg.terminal_stages, *t, fresh.json);
  }
  b.abort_locked(*t, Abort::kLeaseLost, lost);  // no-op when the task's view already ended it
}

void ClaimLoop::reconcile() {
  TaskBoard& b = d_.board;
  std::vector<std::shared_ptr<TrackedTask>> check;
  {
    std::lock_guard<std::mutex> lock(b.mu);
    for (auto& [id, t] : b.tasks) {
      if (t->abort == Abort::kNone && compared_with_upstream(t->state)) check.push_back(t);
    }
  }
  for (auto& t : check) {
    TrackerReply r = d_.client.get_task(t->task_id);
    // A timeout or a 5xx says nothing about the task: keep it (NullBoiler
    // dropped tasks on any non-2xx).
    if (r.transient()) continue;
    std::lock_guard<std::mutex> lock(b.mu);
    if (t->finished || t->abort != Abort::kNone || !compared_with_upstream(t->state)) continue;
    if (r.status == 404) {
      b.abort_locked(*t, Abort::kCancelled, "the task was deleted in NullTickets");
    } else if (r.ok() && r.json.is_object()) {
      apply_upstream_view_locked(b, d_.cfg.terminal_stages, *t, r.json);
    }
  }
}

}  // namespace orch::server
