// SPDX-License-Identifier: MIT
//
// Judging NullTickets' view of a running task (GET /tasks/{id}) against its
// claim: still ours and unchanged, finished through this claim (the agent
// moved it), or taken away (moved, deleted, failed upstream).
//
// Owns nothing: the caller passes the board and the task.
//
// Thread-safety: the caller holds TaskBoard::mu; nothing here does I/O.
#pragma once

#include <string>
#include <vector>

#include "orch/value.h"
#include "pull/tracked_task.h"

namespace orch::server {

// Aborts `t` on `board` when `json` (the task as NullTickets shows it now)
// says its claim is over; otherwise keeps the task's latest JSON, title and
// version. `terminal_stages` is tracker.terminal_stages.
void apply_upstream_view_locked(TaskBoard& board, const std::vector<std::string>& terminal_stages, TrackedTask& t,
                                const Value& json);

}  // namespace orch::server
