// SPDX-License-Identifier: MIT
//
// The JSON shapes of the HTTP API (NullBoiler's key names and order).
#pragma once

#include "orch/store.h"

namespace orch::server {

Value run_summary_json(const RunRecord& run);          // GET /runs items
Value run_json(const RunRecord& run, const std::vector<StepRecord>& steps, int64_t checkpoint_count);
Value step_json(const StepRecord& step);
// `completed` is every node run up to and including this checkpoint.
Value checkpoint_json(const Checkpoint& cp, const std::vector<std::string>& completed);
// Cumulative completed-node lists for a run's checkpoints (oldest first).
std::vector<std::vector<std::string>> cumulative_completed(const std::vector<Checkpoint>& cps);
Value event_json(const EventRecord& event);
Value workflow_json(const WorkflowRecord& wf);

}  // namespace orch::server
