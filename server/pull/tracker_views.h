// SPDX-License-Identifier: MIT
//
// The JSON of the /tracker routes (NullBoiler's shapes, reference §2.11, plus
// a few keys of orch's): status, running tasks, one task, stats. Read-only
// views of the TaskBoard.
//
// Owns nothing: each call builds a new Value.
//
// Thread-safety: each function takes TaskBoard::mu itself; call without it.
#pragma once

#include <optional>
#include <string>

#include "orch/value.h"
#include "pull/tracked_task.h"
#include "pull/tracker_config.h"

namespace orch::server {

Value tracker_status_view(const TaskBoard& board, const TrackerConfig& cfg, size_t pipelines);
Value tracker_tasks_view(const TaskBoard& board);
// A running task, or one of the last finished ones; nullopt when unknown.
std::optional<Value> tracker_task_view(const TaskBoard& board, const std::string& task_id);
Value tracker_stats_view(const TaskBoard& board, const TrackerConfig& cfg);

}  // namespace orch::server
