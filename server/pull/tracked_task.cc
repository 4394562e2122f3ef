// SPDX-License-Identifier: MIT
#include "pull/tracked_task.h"

#include <chrono>
#include <iostream>

namespace orch::server {

const char* state_name(TaskState s) {
  switch (s) {
    case TaskState::kWorkspaceSetup: return "workspace_setup";
    case TaskState::kSpawning: return "spawning";
    case TaskState::kRunning: return "running";
    case TaskState::kCompleting: return "completing";
    case TaskState::kCompleted: return "completed";
    case TaskState::kFailed: return "failed";
    case TaskState::kStalled: return "stalled";
    case TaskState::kCooldown: return "cooldown";
    case TaskState::kRemoving: return "removing";
    case TaskState::kCancelled: return "cancelled";
  }
  return "running";
}

bool compared_with_upstream(TaskState s) {
  return s == TaskState::kWorkspaceSetup || s == TaskState::kSpawning || s == TaskState::kRunning ||
         s == TaskState::kCooldown;
}

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kSucceeded:
    case Outcome::kFinishedUpstream: return "succeeded";
    case Outcome::kFailed: return "failed";
    case Outcome::kStalled: return "stalled";
    case Outcome::kCancelled:
    case Outcome::kRunCancelled: return "cancelled";
    case Outcome::kLeaseLost: return "lease_lost";
    case Outcome::kStopping: return "stopped";
  }
  return "failed";
}

AttemptResult abort_result(const TrackedTask& t) {
  switch (t.abort) {
    case Abort::kCancelled: return {Outcome::kCancelled, t.abort_message};
    case Abort::kLeaseLost: return {Outcome::kLeaseLost, t.abort_message};
    case Abort::kStalled: return {Outcome::kStalled, "subprocess stalled: " + t.abort_message};
    case Abort::kStopping: return {Outcome::kStopping, t.abort_message};
    case Abort::kRunCancelled: return {Outcome::kRunCancelled, t.abort_message};
    case Abort::kFinishedUpstream: return {Outcome::kFinishedUpstream, t.abort_message};
    case Abort::kNone: break;
  }
  return {Outcome::kFailed, "aborted"};
}

Value run_config_locked(const TrackedTask& t) {
  return Value::object({{"task_id", t.task_id},
                        {"task", t.task},
                        {"attempt", static_cast<long long>(t.attempt)},
                        {"pipeline_id", t.pipeline_id},
                        {"agent_role", t.role},
                        {"execution", t.execution},
                        {"workspace", t.workspace},
                        {"tracker_run_id", t.tracker_run_id}});
}

std::vector<std::pair<std::string, std::string>> task_env_locked(const TrackedTask& t, const std::string& tracker_url) {
  return {{"ORCH_TASK_ID", t.task_id},
          {"ORCH_TASK_TITLE", t.title},
          {"ORCH_TASK_STAGE", t.claimed_stage},
          {"ORCH_PIPELINE_ID", t.pipeline_id},
          {"ORCH_AGENT_ROLE", t.role},
          {"ORCH_EXECUTION", t.execution},
          {"ORCH_WORKSPACE", t.workspace},
          {"ORCH_ATTEMPT", std::to_string(t.attempt)},
          {"ORCH_RUN_ID", t.run_id},
          {"ORCH_TRACKER_URL", tracker_url},
          {"ORCH_TRACKER_RUN_ID", t.tracker_run_id}};
}

void TaskBoard::abort_locked(TrackedTask& t, Abort why, const std::string& message) {
  if (t.abort != Abort::kNone || t.finished) return;
  t.abort = why;
  t.abort_message = message;
  if (t.agent) t.agent->kill_now();
  t.cv.notify_all();
  if (why != Abort::kStopping) tracker_log("task " + t.task_id + ": " + message);
}

void TaskBoard::wake_liveness_locked() {
  live_dirty = true;
  live_cv.notify_all();
}

void TaskBoard::set_state(TrackedTask& t, TaskState s) {
  std::lock_guard<std::mutex> lock(mu);
  t.state = s;
  if (s == TaskState::kSpawning || s == TaskState::kRunning) {
    // The stall clock starts when watching starts, not at claim time.
    t.activity_ms = steady_ms();
    wake_liveness_locked();
  }
}

bool TaskBoard::wait_interruptible(TrackedTask& t, int64_t ms) {
  std::unique_lock<std::mutex> lock(mu);
  t.cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return t.abort != Abort::kNone || t.engine_cancelled; });
  return t.abort == Abort::kNone && !t.engine_cancelled;
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void tracker_log(const std::string& message) { std::cerr << "orch tracker: " << message << "\n"; }

}  // namespace orch::server
