// SPDX-License-Identifier: MIT
//
// The fencing scenario of issue #21, on any pair of stores over one database
// (the same in-memory store twice, or two PostgreSQL stores on one schema):
// engine A starts a run whose first node blocks (a slow in-process worker),
// A's lease runs out (it is taken for 0 ms, as if A had stopped renewing:
// paused, cut off), engine B takes the run over and completes it, then A's
// node is let go. A's writes for the run must all be refused ("lease lost")
// and A must drop the run; every node after the takeover runs once, on B.
#pragma once

#include <memory>

#include "orch/store.h"

namespace orch::testing {

struct FencingOutcome {
  bool started = false;        // A's slow node began
  size_t taken_over = 0;       // B's take_over_expired_runs
  RunStatus final_status = RunStatus::kPending;  // the stored run, once B is done
  int slow_on_a = 0;           // executions of node "slow" on A (1: the one left behind)
  int slow_on_b = 0;
  int after_on_a = 0;          // node "after", which follows "slow"
  int after_on_b = 0;
  int refused_writes_a = 0;    // A's write_batch calls refused with lease lost
  int accepted_writes_a_after_takeover = 0;  // A's write_batch calls that succeeded after B's claim
  bool a_dropped_run = false;  // A no longer runs it
  int completed_events = 0;    // "run.completed" events stored
  int slow_results = 0;        // "task_result" events of node "slow" stored
};

FencingOutcome run_fencing_scenario(std::shared_ptr<Store> store_a, std::shared_ptr<Store> store_b);

}  // namespace orch::testing
