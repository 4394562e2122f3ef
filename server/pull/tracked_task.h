// SPDX-License-Identifier: MIT
//
// The record of one claimed task (TrackedTask) and the board every part of
// pull mode shares (TaskBoard): the running tasks, the finished ones kept for
// the API, the counters and the wake-ups between the threads.
//
// Who owns what: Tracker::Impl owns the TaskBoard; the board owns the
// TrackedTasks (shared with the task's own thread and, while a run is live,
// the by_run index). The claim loop adds tasks, the task runner removes them.
//
// Thread-safety: one mutex, TaskBoard::mu, guards the board and every
// TrackedTask field below the line in TrackedTask. Nothing holds it across
// network I/O, a hook or an agent turn. Methods named *_locked expect it held.
#pragma once

#include <climits>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "orch/dispatcher.h"
#include "orch/value.h"
#include "pull/subprocess_agent.h"
#include "pull/tracker_config.h"

namespace orch::server {

// What a task is doing now, as /tracker/tasks shows it.
enum class TaskState {
  kWorkspaceSetup, kSpawning, kRunning, kCompleting, kCompleted, kFailed, kStalled, kCooldown, kRemoving, kCancelled
};
const char* state_name(TaskState s);

// States in which the task's work is still ahead or in progress: NullTickets'
// view is compared with the claim only then (not while transitioning or
// cleaning up, when our own transition moves the stage).
bool compared_with_upstream(TaskState s);

// Why a task's thread must stop what it is doing. The first reason wins.
enum class Abort {
  kNone,
  kCancelled,         // the task moved (or vanished) upstream: cancel the run, leave NullTickets alone
  kLeaseLost,         // the lease is gone: cancel the run, nothing to report
  kStalled,           // no activity for stall_timeout_ms: fail
  kStopping,          // orch shuts down: cancel the run, release the lease
  kRunCancelled,      // someone cancelled the orch run: release the lease
  kFinishedUpstream,  // the task was transitioned through this claim (by the agent): success
};

// How an attempt (and then the task) ended.
enum class Outcome { kSucceeded, kFinishedUpstream, kFailed, kStalled, kCancelled, kRunCancelled, kLeaseLost, kStopping };
// The outcome as hooks see it (ORCH_OUTCOME).
const char* outcome_name(Outcome o);

struct AttemptResult {
  Outcome kind = Outcome::kFailed;
  std::string message;
};

// One claimed task. Fields above the line are fixed at claim time; the rest
// are guarded by TaskBoard::mu.
struct TrackedTask {
  std::string task_id;
  std::string pipeline_id;
  std::string role;
  std::string execution;
  std::string tracker_run_id;  // NullTickets' run of this claim
  std::string lease_id;
  std::string lease_token;
  std::string claimed_stage;
  std::shared_ptr<const PipelineDef> def;
  int64_t started_at_ms = 0;
  // ---------------------------------------------------------------------
  Value task;                  // latest task JSON from NullTickets
  std::string title;
  std::optional<int64_t> task_version;
  TaskState state = TaskState::kWorkspaceSetup;
  int64_t attempt = 1;
  int64_t current_turn = 0;
  int64_t max_turns = 1;
  int64_t activity_ms = 0;         // steady clock, for stall detection
  int64_t last_activity_wall = 0;  // for the API
  std::string run_id;              // the current attempt's orch run
  std::vector<std::string> run_ids;
  std::string workspace;
  std::string error;
  Value usage;                     // tokens of the last run, forwarded to NullTickets
  int64_t heartbeat_due_ms = 0;    // steady clock
  int64_t lease_expires_at_ms = 0; // wall clock, from NullTickets
  int64_t heartbeats = 0;
  Abort abort = Abort::kNone;
  std::string abort_message;
  bool run_terminal = false;
  bool finished = false;
  int64_t ended_at_ms = 0;
  // subprocess execution
  std::shared_ptr<SubprocessAgent> agent;
  bool has_request = false;
  bool serving_closed = false;     // the agent call was answered (or never will be)
  bool engine_cancelled = false;   // the engine abandoned the agent call
  WorkerRequest request;
  Dispatcher::Callback done;
  std::string step_id;
  std::thread thread;
  std::condition_variable cv;      // wakes the task's thread (waits on TaskBoard::mu)
};

// The result an abort stands for (t.abort must be set).
AttemptResult abort_result(const TrackedTask& t);
// The config of a task's orch runs ({{config.task…}} in prompts).
Value run_config_locked(const TrackedTask& t);
// The environment of hooks and agents (ORCH_TASK_ID and the rest).
std::vector<std::pair<std::string, std::string>> task_env_locked(const TrackedTask& t, const std::string& tracker_url);

struct TaskBoard {
  static constexpr size_t kHistory = 100;  // finished tasks kept for /tracker/tasks/{id}

  mutable std::mutex mu;
  std::condition_variable poll_cv;  // poll thread: refresh, stop, a task thread to join
  std::condition_variable live_cv;  // liveness thread: new deadlines, stop
  std::condition_variable idle_cv;  // stop(): the last task ended
  bool started = false;
  bool stopping = false;
  bool refresh_requested = false;
  bool live_dirty = false;
  std::map<std::string, std::shared_ptr<TrackedTask>> tasks;   // running, by task id
  std::map<std::string, std::shared_ptr<TrackedTask>> by_run;  // orch run id -> task
  std::deque<std::shared_ptr<TrackedTask>> history;            // finished, newest first
  std::vector<std::thread> finished_threads;                   // for the poll thread to join
  std::map<std::string, int64_t> attempts;                     // per task id, until it succeeds
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  int64_t released = 0;
  std::string last_claim_error;

  // Records why `t` must stop (the first reason wins), kills its agent and
  // wakes its thread.
  void abort_locked(TrackedTask& t, Abort why, const std::string& message);
  // Tells the liveness thread that deadlines changed.
  void wake_liveness_locked();
  void set_state(TrackedTask& t, TaskState s);
  // Sleeps up to `ms`; false when the task was aborted or its agent call
  // abandoned meanwhile.
  bool wait_interruptible(TrackedTask& t, int64_t ms);
};

int64_t wall_ms();
inline int64_t saturating_add(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }
inline int64_t saturating_mul(int64_t a, int64_t b) { return b != 0 && a > INT64_MAX / b ? INT64_MAX : a * b; }
// Pull mode's log lines on stderr ("orch tracker: …").
void tracker_log(const std::string& message);

}  // namespace orch::server
