// SPDX-License-Identifier: MIT
//
// One log line per run transition (run.started, run.completed, run.failed,
// run.cancelled, run.interrupted, run.resumed, run.retried, run.forked,
// run.replayed), from the engine's events. Only ids, the reason and the error
// text are logged: never the run's input, state or callbacks.
#pragma once

#include "orch/store.h"

namespace orch::server {

// Logs `event` when it is a run transition; ignores every other kind.
void log_run_event(const EventRecord& event);

}  // namespace orch::server
