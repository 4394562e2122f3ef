// SPDX-License-Identifier: MIT
#include "pull/task_runner.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "orch/id.h"
#include "orch/thread_guard.h"
#include "pull/task_workflows.h"

namespace orch::server {

TaskRunner::TaskRunner(Deps deps) : d_(std::move(deps)) {}

void TaskRunner::run(const std::shared_ptr<TrackedTask>& t) {
  if (run_guarded("tracker task", [&] { run_attempts(t); })) return;
  {
    std::lock_guard<std::mutex> lock(d_.board.mu);
    if (t->finished) return;
  }
  run_guarded("tracker task", [&] { finish(t, {Outcome::kFailed, "internal error (see the orch log)"}); });
}

HookResult TaskRunner::hook(const std::shared_ptr<TrackedTask>& t, const char* name, const std::string& script,
                            const std::string& outcome) {
  if (script.empty()) return HookResult();
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;
  {
    std::lock_guard<std::mutex> lock(d_.board.mu);
    env = task_env_locked(*t, d_.cfg.url);
    cwd = t->workspace;
  }
  if (!outcome.empty()) env.emplace_back("ORCH_OUTCOME", outcome);
  HookResult r = run_hook(name, script, cwd, env, d_.cfg.hook_timeout_ms, d_.cfg.inherit_env);
  if (!r.ok) tracker_log("task " + t->task_id + ": " + r.error);
  return r;
}

void TaskRunner::run_attempts(const std::shared_ptr<TrackedTask>& t) {
  TaskBoard& board = d_.board;
  AttemptResult result;
  for (;;) {
    result = run_attempt(t);
    bool has_workspace;
    {
      std::lock_guard<std::mutex> lock(board.mu);
      has_workspace = !t->workspace.empty();
    }
    if (has_workspace) (void)hook(t, "after_run", d_.cfg.hooks.after_run, outcome_name(result.kind));
    const PipelineDef& def = *t->def;
    bool retry = false;
    int64_t delay = 0;
    if (result.kind == Outcome::kFailed || result.kind == Outcome::kStalled) {
      std::lock_guard<std::mutex> lock(board.mu);
      // A stall ends only its attempt; any other abort ends the task.
      const bool retryable_abort = t->abort == Abort::kNone || t->abort == Abort::kStalled;
      retry = def.retry_on_failure && t->attempt < def.retry_max_attempts && retryable_abort && !board.stopping;
      if (retry) {
        t->abort = Abort::kNone;
        t->abort_message.clear();
        int shift = static_cast<int>(std::min<int64_t>(t->attempt - 1, 30));
        delay = std::min(saturating_mul(def.retry_backoff_base_ms, int64_t{1} << shift), def.retry_backoff_max_ms);
        t->state = TaskState::kCooldown;
        t->error = result.message;
      }
    }
    if (!retry) break;
    // Local retry keeps the claim: the lease stays heartbeated through the
    // cooldown, so NullTickets neither re-offers the task nor counts a failure.
    tracker_log("task " + t->task_id + ": attempt " + std::to_string(t->attempt) + " failed (" + result.message +
                "); retrying in " + std::to_string(delay) + " ms");
    if (!board.wait_interruptible(*t, delay)) {
      std::lock_guard<std::mutex> lock(board.mu);
      result = abort_result(*t);
      break;
    }
    std::lock_guard<std::mutex> lock(board.mu);
    t->attempt = ++board.attempts[t->task_id];
    t->current_turn = 0;
    t->run_terminal = false;
    t->has_request = false;
    t->serving_closed = false;
    t->engine_cancelled = false;
  }
  finish(t, std::move(result));
}

AttemptResult TaskRunner::run_attempt(const std::shared_ptr<TrackedTask>& t) {
  TaskBoard& board = d_.board;
  board.set_state(*t, TaskState::kWorkspaceSetup);
  auto ws = d_.workspaces.prepare(t->task_id);
  if (!ws.ok()) return {Outcome::kFailed, "workspace: " + ws.status().message()};
  {
    std::lock_guard<std::mutex> lock(board.mu);
    t->workspace = ws->path;
  }
  if (ws->fresh) {
    HookResult h = hook(t, "after_create", d_.cfg.hooks.after_create);
    if (!h.ok) return {Outcome::kFailed, h.error};
  }
  HookResult h = hook(t, "before_run", d_.cfg.hooks.before_run);
  if (!h.ok) return {Outcome::kFailed, h.error};
  {
    std::lock_guard<std::mutex> lock(board.mu);
    if (t->abort != Abort::kNone) return abort_result(*t);
  }
  const PipelineDef& def = *t->def;
  if (t->execution == "dispatch") {
    auto wf = dispatch_workflow(def, d_.store);
    if (!wf.ok()) return {Outcome::kFailed, wf.status().message()};
    return run_on(t, d_.server_engine, *wf, "");
  }
  // The first prompt is rendered here, with the task and attempt in context.
  std::string prompt;
  {
    auto rendered = render_for_task(board, *t, *def.prompt, nullptr);
    if (!rendered.ok()) return {Outcome::kFailed, "prompt_template: " + rendered.status().message()};
    prompt = std::move(rendered).value();
  }
  auto wf = agent_workflow(def, d_.cfg);
  if (!wf.ok()) return {Outcome::kFailed, wf.status().message()};
  return run_on(t, *agent_engine_, *wf, prompt);
}

AttemptResult TaskRunner::run_on(const std::shared_ptr<TrackedTask>& t, Engine& engine,
                                 std::shared_ptr<const Workflow> wf, const std::string& prompt) {
  TaskBoard& board = d_.board;
  const bool subprocess = t->execution == "subprocess";
  const std::string run_id = new_uuid();
  RunOptions options;
  options.run_id = run_id;
  options.workflow_id = t->def->workflow_id.empty() ? t->def->id : t->def->workflow_id;
  {
    std::lock_guard<std::mutex> lock(board.mu);
    t->run_id = run_id;
    t->run_ids.push_back(run_id);
    t->run_terminal = false;
    board.by_run[run_id] = t;
    t->state = subprocess ? TaskState::kSpawning : TaskState::kRunning;
    t->current_turn = subprocess ? 0 : 1;
    t->activity_ms = steady_ms();
    board.wake_liveness_locked();
    options.input = t->task;
    options.config = run_config_locked(*t);
  }
  if (subprocess) options.config.set("prompt", prompt);
  auto launched = engine.start_run(std::move(wf), std::move(options));
  if (!launched.ok()) return {Outcome::kFailed, "cannot start the orch run: " + launched.status().message()};
  if (subprocess) d_.agents.serve(t, engine);

  // Wait for the run to end. Aborts that take the task away cancel the run;
  // a stalled agent's run fails through its answer instead.
  {
    std::unique_lock<std::mutex> lock(board.mu);
    auto cancels = [&] {
      if (t->abort == Abort::kNone) return false;
      if (!subprocess) return true;
      return t->abort != Abort::kStalled && t->abort != Abort::kFinishedUpstream;
    };
    t->cv.wait(lock, [&] { return t->run_terminal || cancels(); });
    if (!t->run_terminal) {
      lock.unlock();
      (void)engine.cancel_run(run_id);
      lock.lock();
      t->cv.wait_for(lock, std::chrono::seconds(10), [&] { return t->run_terminal; });
    }
  }
  auto record = engine.get_run(run_id);
  std::lock_guard<std::mutex> lock(board.mu);
  if (record.ok() && (record->input_tokens > 0 || record->output_tokens > 0)) {
    t->usage = Value::object({{"input_tokens", static_cast<long long>(record->input_tokens)},
                              {"output_tokens", static_cast<long long>(record->output_tokens)}});
  }
  if (t->abort != Abort::kNone) return abort_result(*t);
  if (!record.ok()) return {Outcome::kFailed, "the orch run vanished: " + record.status().message()};
  switch (record->status) {
    case RunStatus::kCompleted: return {Outcome::kSucceeded, ""};
    case RunStatus::kCancelled: return {Outcome::kRunCancelled, "the orch run " + run_id + " was cancelled"};
    case RunStatus::kFailed: return {Outcome::kFailed, record->error.empty() ? "the orch run failed" : record->error};
    default: break;
  }
  return {Outcome::kFailed, "the orch run ended as " + std::string(run_status_name(record->status))};
}

std::string TaskRunner::complete_upstream(const std::shared_ptr<TrackedTask>& t) {
  std::string trigger = t->def->success_trigger;
  if (trigger.empty()) {
    const TrackerReply fresh = d_.client.get_task(t->task_id);
    if (!fresh.ok()) return "cannot read the task to choose a transition: " + fresh.describe();
    const Value& transitions = fresh.json["available_transitions"];
    if (!transitions.is_array() || transitions.size() != 1) {
      return "on_success.transition_to is not set and the task has " +
             std::to_string(transitions.is_array() ? transitions.size() : 0) + " available transitions";
    }
    trigger = (*transitions.at(0))["trigger"].get_string("");
  }
  std::string stage;
  std::optional<int64_t> version;
  Value usage;
  {
    std::lock_guard<std::mutex> lock(d_.board.mu);
    stage = t->claimed_stage;
    version = t->task_version;
    usage = t->usage;
  }
  TrackerReply r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    r = d_.client.transition(t->tracker_run_id, t->lease_token, trigger, stage, version, usage);
    if (!r.transient()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
  }
  if (!r.ok()) return "transition '" + trigger + "' failed: " + r.describe();
  std::lock_guard<std::mutex> lock(d_.board.mu);
  const Value& answer = r.json;
  if (answer["new_stage"].is_string()) t->task.set("stage", answer["new_stage"]);
  tracker_log("task " + t->task_id + " completed (" + trigger + " -> " + answer["new_stage"].get_string("?") + ")");
  return "";
}

void TaskRunner::fail_upstream(const std::shared_ptr<TrackedTask>& t, const std::string& error) {
  const std::string& trigger = t->def->failure_trigger;
  if (!trigger.empty()) {
    // on_failure.transition_to is used when the task's stage offers it;
    // otherwise the run is failed as NullBoiler always did.
    const TrackerReply fresh = d_.client.get_task(t->task_id);
    bool offered = false;
    if (fresh.ok() && fresh.json["available_transitions"].is_array()) {
      for (const Value& tr : fresh.json["available_transitions"].as_array()) offered |= tr["trigger"].get_string("") == trigger;
    }
    if (offered) {
      std::string stage;
      std::optional<int64_t> version;
      {
        std::lock_guard<std::mutex> lock(d_.board.mu);
        stage = t->claimed_stage;
        version = fresh.json["task_version"].is_int() ? std::optional<int64_t>(fresh.json["task_version"].as_int())
                                                      : t->task_version;
      }
      TrackerReply r = d_.client.transition(t->tracker_run_id, t->lease_token, trigger, stage, version, Value());
      if (r.ok()) return;
      tracker_log("task " + t->task_id + ": on_failure transition '" + trigger + "' failed: " + r.describe());
    }
  }
  release_claim(t, error);
}

void TaskRunner::release_claim(const std::shared_ptr<TrackedTask>& t, const std::string& error) {
  Value usage;
  {
    std::lock_guard<std::mutex> lock(d_.board.mu);
    usage = t->usage;
  }
  TrackerReply r = d_.client.fail(t->tracker_run_id, t->lease_token, error, usage);
  if (!r.ok()) tracker_log("task " + t->task_id + ": POST /runs/" + t->tracker_run_id + "/fail: " + r.describe());
}

void TaskRunner::finish(const std::shared_ptr<TrackedTask>& t, AttemptResult result) {
  TaskBoard& board = d_.board;
  bool keep_workspace = false;
  TaskState final_state = TaskState::kFailed;
  bool count_completed = false;
  bool count_failed = false;
  bool count_cancelled = false;
  if (result.kind == Outcome::kSucceeded) {
    board.set_state(*t, TaskState::kCompleting);
    std::string error = complete_upstream(t);
    if (!error.empty()) result = {Outcome::kFailed, error};
  }
  switch (result.kind) {
    case Outcome::kSucceeded:
    case Outcome::kFinishedUpstream:
      final_state = TaskState::kCompleted;
      count_completed = true;
      break;
    case Outcome::kFailed:
    case Outcome::kStalled:
      fail_upstream(t, result.kind == Outcome::kStalled ? result.message : "execution failed: " + result.message);
      final_state = result.kind == Outcome::kStalled ? TaskState::kStalled : TaskState::kFailed;
      count_failed = true;
      break;
    case Outcome::kCancelled:
      final_state = TaskState::kCancelled;
      count_cancelled = true;
      break;
    case Outcome::kRunCancelled:
      release_claim(t, "released by orch: " + result.message);
      final_state = TaskState::kCancelled;
      count_cancelled = true;
      break;
    case Outcome::kLeaseLost:
      final_state = TaskState::kFailed;
      count_failed = true;
      break;
    case Outcome::kStopping:
      release_claim(t, "released by orch: shutting down");
      final_state = TaskState::kFailed;
      keep_workspace = true;  // removed as stale at the next start; no hooks while stopping
      break;
  }
  std::string workspace;
  {
    std::lock_guard<std::mutex> lock(board.mu);
    workspace = t->workspace;
    if (result.kind == Outcome::kSucceeded || result.kind == Outcome::kFinishedUpstream) {
      t->error.clear();  // an earlier attempt's failure no longer describes the task
    } else {
      t->error = result.message;
    }
  }
  if (!workspace.empty() && !keep_workspace) {
    board.set_state(*t, TaskState::kRemoving);
    (void)hook(t, "before_remove", d_.cfg.hooks.before_remove);
    Status removed = d_.workspaces.remove(workspace);
    if (!removed.ok()) tracker_log("task " + t->task_id + ": " + removed.message());
  }
  Dispatcher::Callback orphan;
  std::unique_lock<std::mutex> lock(board.mu);
  t->state = final_state;
  t->finished = true;
  t->ended_at_ms = wall_ms();
  orphan = std::move(t->done);
  board.completed += count_completed;
  board.failed += count_failed;
  board.cancelled += count_cancelled;
  if (count_completed) board.attempts.erase(t->task_id);
  board.tasks.erase(t->task_id);
  for (const std::string& id : t->run_ids) board.by_run.erase(id);
  board.history.push_front(t);
  if (board.history.size() > TaskBoard::kHistory) board.history.pop_back();
  board.finished_threads.push_back(std::move(t->thread));
  if (final_state != TaskState::kCompleted) {
    tracker_log("task " + t->task_id + " " + state_name(final_state) + (t->error.empty() ? "" : ": " + t->error));
  }
  board.poll_cv.notify_all();
  board.idle_cv.notify_all();
  lock.unlock();
  if (orphan) {
    WorkerReply reply;
    reply.status = Status::cancelled("the pull-mode task ended");
    reply.retryable = false;
    orphan(std::move(reply));
  }
}

}  // namespace orch::server
