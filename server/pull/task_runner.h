// SPDX-License-Identifier: MIT
//
// TaskRunner: the life of one claimed task, on the task's own thread.
//
//   attempts   workspace + hooks (after_create, before_run), then an orch run:
//              `dispatch` pipelines on the server's engine, `subprocess`
//              ones on the tracker's engine with the AgentDriver serving the
//              agent call; a failed attempt retries locally (the lease stays
//              heartbeated through the cooldown) up to retry_max_attempts
//   upstream   success transitions the task (on_success.transition_to, or the
//              one transition offered); failure takes on_failure.transition_to
//              when offered, else fails the claim's run; a run cancelled here
//              or a shutdown releases the claim; a task cancelled upstream or
//              a lost lease leaves NullTickets alone
//   cleanup    after_run and before_remove hooks, the workspace removed, the
//              task moved to the board's history and its thread handed to
//              the poll thread to join
//
// Who owns what: Tracker::Impl owns the runner and what its Deps refer to;
// the runner owns nothing beyond the call.
//
// Thread-safety: run() is called on each task's own thread, for many tasks
// at once; set_agent_engine() once, before any task runs.
#pragma once

#include <memory>
#include <string>

#include "orch/engine.h"
#include "orch/store.h"
#include "pull/agent_driver.h"
#include "pull/tracked_task.h"
#include "pull/tracker_client.h"
#include "pull/tracker_config.h"
#include "pull/workspace.h"

namespace orch::server {

class TaskRunner {
 public:
  struct Deps {
    TaskBoard& board;
    const TrackerConfig& cfg;
    TrackerClient& client;
    WorkspaceManager& workspaces;
    Engine& server_engine;  // runs `dispatch` pipelines
    Store& store;           // stored workflows named by pipelines
    AgentDriver& agents;    // serves `subprocess` runs
  };

  explicit TaskRunner(Deps deps);
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // The engine of `subprocess` runs (the tracker's own).
  void set_agent_engine(Engine* engine) { agent_engine_ = engine; }

  // The whole task; an exception ends it as failed instead of leaving it on
  // the board (stop() waits for every task to finish).
  void run(const std::shared_ptr<TrackedTask>& t);

 private:
  void run_attempts(const std::shared_ptr<TrackedTask>& t);
  AttemptResult run_attempt(const std::shared_ptr<TrackedTask>& t);
  AttemptResult run_on(const std::shared_ptr<TrackedTask>& t, Engine& engine, std::shared_ptr<const Workflow> wf,
                       const std::string& prompt);
  void finish(const std::shared_ptr<TrackedTask>& t, AttemptResult result);
  // "" on success, else why the transition could not be made.
  std::string complete_upstream(const std::shared_ptr<TrackedTask>& t);
  void fail_upstream(const std::shared_ptr<TrackedTask>& t, const std::string& error);
  void release_claim(const std::shared_ptr<TrackedTask>& t, const std::string& error);
  HookResult hook(const std::shared_ptr<TrackedTask>& t, const char* name, const std::string& script,
                  const std::string& outcome = "");

  Deps d_;
  Engine* agent_engine_ = nullptr;
};

}  // namespace orch::server
