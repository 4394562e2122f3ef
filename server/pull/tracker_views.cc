// SPDX-License-Identifier: MIT
#include "pull/tracker_views.h"

#include <mutex>

namespace orch::server {
namespace {

Value task_view_locked(const TrackedTask& t) {
  Value v = Value::object({{"task_id", t.task_id},
                           {"task_title", t.title},
                           {"pipeline_id", t.pipeline_id},
                           {"agent_role", t.role},
                           {"execution", t.execution},
                           {"current_turn", static_cast<long long>(t.current_turn)},
                           {"max_turns", static_cast<long long>(t.max_turns)},
                           {"started_at_ms", static_cast<long long>(t.started_at_ms)},
                           {"last_activity_ms", static_cast<long long>(t.last_activity_wall)},
                           {"state", state_name(t.state)},
                           {"attempt", static_cast<long long>(t.attempt)},
                           {"run_id", t.run_id.empty() ? Value() : Value(t.run_id)},
                           {"tracker_run_id", t.tracker_run_id},
                           {"stage", t.claimed_stage},
                           {"workspace", t.workspace.empty() ? Value() : Value(t.workspace)},
                           {"heartbeats", static_cast<long long>(t.heartbeats)}});
  if (!t.error.empty()) v.set("error", t.error);
  if (t.finished) v.set("ended_at_ms", static_cast<long long>(t.ended_at_ms));
  return v;
}

Value running_locked(const TaskBoard& board) {
  Value out = Value::array();
  for (const auto& [id, t] : board.tasks) out.push_back(task_view_locked(*t));
  return out;
}

}  // namespace

Value tracker_status_view(const TaskBoard& board, const TrackerConfig& cfg, size_t pipelines) {
  std::lock_guard<std::mutex> lock(board.mu);
  return Value::object({{"mode", "pull"},
                        {"running_count", static_cast<long long>(board.tasks.size())},
                        {"max_concurrent", static_cast<long long>(cfg.max_concurrent_tasks)},
                        {"completed_count", static_cast<long long>(board.completed)},
                        {"failed_count", static_cast<long long>(board.failed)},
                        {"poll_interval_ms", static_cast<long long>(cfg.poll_interval_ms)},
                        {"running", running_locked(board)},
                        {"cancelled_count", static_cast<long long>(board.cancelled)},
                        {"released_count", static_cast<long long>(board.released)},
                        {"pipelines", static_cast<long long>(pipelines)}});
}

Value tracker_tasks_view(const TaskBoard& board) {
  std::lock_guard<std::mutex> lock(board.mu);
  return running_locked(board);
}

std::optional<Value> tracker_task_view(const TaskBoard& board, const std::string& task_id) {
  std::lock_guard<std::mutex> lock(board.mu);
  if (auto it = board.tasks.find(task_id); it != board.tasks.end()) return task_view_locked(*it->second);
  for (const auto& t : board.history) {
    if (t->task_id == task_id) return task_view_locked(*t);
  }
  return std::nullopt;
}

Value tracker_stats_view(const TaskBoard& board, const TrackerConfig& cfg) {
  std::lock_guard<std::mutex> lock(board.mu);
  const int64_t running = static_cast<int64_t>(board.tasks.size());
  return Value::object({{"running", static_cast<long long>(running)},
                        {"completed", static_cast<long long>(board.completed)},
                        {"failed", static_cast<long long>(board.failed)},
                        {"total", static_cast<long long>(running + board.completed + board.failed + board.cancelled)},
                        {"max_concurrent", static_cast<long long>(cfg.max_concurrent_tasks)},
                        {"cancelled", static_cast<long long>(board.cancelled)}});
}

}  // namespace orch::server
