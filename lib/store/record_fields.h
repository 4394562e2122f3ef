// SPDX-License-Identifier: MIT
//
// The columns the database stores (SQLite, PostgreSQL) keep each record in,
// in the order both bind and read them (the first is the record's key), and
// the parsing of stored step statuses. One list, so the two schemas cannot
// drift apart field by field.
#pragma once

#include <optional>
#include <string_view>

#include "orch/store.h"

namespace orch::internal {

inline constexpr const char* kRunFields[] = {
    "id",           "status",          "workflow_id",       "workflow",          "input",
    "config",       "state",           "host_data",         "error",             "parent_run_id",
    "parent_node",  "idempotency_key", "forked_from_run_id", "forked_from_checkpoint_id",
    "created_at_ms", "updated_at_ms",  "started_at_ms",     "ended_at_ms",       "input_tokens",
    "output_tokens", "checkpoint_count", "recoveries"};
inline constexpr const char* kStepFields[] = {
    "id",           "run_id",        "node_name",     "type",          "status",
    "attempt",      "max_attempts",  "superstep",     "item_index",    "parent_step_id",
    "worker_id",    "child_run_id",  "input",         "output",        "error",
    "input_tokens", "output_tokens", "created_at_ms", "started_at_ms", "ended_at_ms"};
// state_checkpoint_id: the checkpoint whose state an event was stored without.
inline constexpr const char* kEventFields[] = {"run_id", "seq", "kind", "data", "created_at_ms", "state_checkpoint_id"};
inline constexpr const char* kPendingWriteFields[] = {"run_id", "superstep", "node_name", "result"};
inline constexpr const char* kWorkflowFields[] = {"id", "name", "version", "definition", "created_at_ms", "updated_at_ms"};

template <size_t N>
constexpr int field_count(const char* const (&)[N]) {
  return static_cast<int>(N);
}

// The status step_status_name() wrote, or nullopt for a damaged value.
inline std::optional<StepStatus> step_status_from_name(std::string_view name) {
  for (StepStatus s : {StepStatus::kPending, StepStatus::kReady, StepStatus::kRunning, StepStatus::kCompleted,
                       StepStatus::kFailed, StepStatus::kSkipped, StepStatus::kInterrupted}) {
    if (step_status_name(s) == name) return s;
  }
  return std::nullopt;
}

}  // namespace orch::internal
