// SPDX-License-Identifier: MIT
//
// Tracker: pull mode. orch asks NullTickets for work instead of waiting for
// POST /runs (reference/nullboiler-api.md §8, docs/pull-mode.md):
//
//   poll thread      every poll_interval_ms (or at once on refresh()):
//                    reconcile running tasks with NullTickets, then claim
//                    tasks per pipeline workflow and role within the limits
//   liveness thread  heartbeats each lease on its own timer and detects
//                    stalled tasks (no activity for stall_timeout_ms)
//   one thread/task  workspace + hooks, the orch run, transition or failure
//
// The parts, each in its own file and taking only what it uses of the
// server (TrackerHost, tracker_host.h): ClaimLoop (claim_loop.h: the poll
// and liveness threads), TaskRunner (task_runner.h: a task's thread),
// AgentDriver (agent_driver.h: a subprocess agent's turns), the /tracker
// views (tracker_views.h); they share one TaskBoard (tracked_task.h).
//
// Every claimed task becomes orch runs (one per attempt) that GET /runs shows
// with their steps and events: `dispatch` pipelines run a graph workflow on
// the server's engine and workers; `subprocess` pipelines run on a second
// engine whose only worker is the task's spawned agent (its turns appear as
// `agent.turn` events of the run's step).
//
// Fixes over NullBoiler (§11.4): a claimed task that is not run is released
// (POST /runs/{id}/fail) instead of leaking its lease; attempts are counted
// per task until it succeeds and local retries keep the lease; hooks get an
// environment; a task moved to a terminal stage upstream cancels its run
// (status cancelled, not failed); a transient NullTickets error never drops a
// task; a refused heartbeat of a task that has left its claimed stage is
// judged from the task (the agent moved it: finished upstream), not taken for
// a lost lease; no lock is held across network I/O.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orch/status.h"
#include "orch/store.h"
#include "orch/value.h"
#include "pull/tracker_config.h"

namespace orch::server {

struct App;

class Tracker {
 public:
  // `app` must outlive the Tracker (App owns it and stops it first); the
  // tracker uses only the parts of it that TrackerHost names.
  Tracker(App& app, TrackerConfig config, std::vector<PipelineDef> pipelines);
  ~Tracker();  // stop()
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  // Prepares the workspace root (removing stale workspaces) and starts the
  // threads; the first poll happens at once.
  Status start();
  // Stops claiming, kills agents, cancels the runs of running tasks and
  // releases their leases; returns when every task thread has ended.
  void stop();
  // Wakes the poll thread for an immediate poll.
  void refresh();

  // JSON for the /tracker routes (NullBoiler's shapes, §2.11, plus a few keys).
  Value status_json() const;
  Value tasks_json() const;
  std::optional<Value> task_json(const std::string& task_id) const;
  Value stats_json() const;

  const TrackerConfig& config() const;

  struct Impl;  // tracker.cc only

 private:
  std::shared_ptr<Impl> impl_;
};

// Pull mode is on when the config's `tracker` is an object with a url.
bool tracker_configured(const App& app);
// Parses app.config.tracker, loads the pipeline workflows, creates app.tracker
// and starts it. OK (and nothing done) when pull mode is off; InvalidArgument
// for a bad tracker block or pipeline workflow.
Status start_tracker(App& app);
// Stops app.tracker if there is one.
void stop_tracker(App& app);
// EngineOptions::resume_veto of the server's engine: a pull-mode run (its
// config names a NullTickets task and run) is not resumed after its instance
// stopped, by a restart or by another instance taking it over. The NullTickets
// lease, the agent process and the task's thread that reported the result all
// died with that instance, and NullTickets offers the task again once the
// lease runs out: resuming the run would do the work twice and report it to
// nobody. The answer is the run's error; "" for every other run.
std::string pull_run_resume_veto(const RunRecord& run);

}  // namespace orch::server
