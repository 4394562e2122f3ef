// SPDX-License-Identifier: MIT
//
// Tracker: puts pull mode's parts together (see tracker.h) and feeds them the
// events of both engines. The parts: ClaimLoop (claim_loop.h), TaskRunner
// (task_runner.h), AgentDriver (agent_driver.h), the views of the /tracker
// routes (tracker_views.h), all sharing one TaskBoard (tracked_task.h).
#include "pull/tracker.h"

#include <unistd.h>

#include <filesystem>

#include "app.h"
#include "orch/event_kinds.h"
#include "orch/postgres_store.h"
#include "pull/agent_driver.h"
#include "pull/claim_loop.h"
#include "pull/task_runner.h"
#include "pull/tracked_task.h"
#include "pull/tracker_client.h"
#include "pull/tracker_host.h"
#include "pull/tracker_views.h"
#include "pull/workspace.h"

namespace orch::server {
namespace {

bool is_run_end(const std::string& kind) {
  return kind == event_kind::kRunCompleted || kind == event_kind::kRunFailed || kind == event_kind::kRunCancelled;
}

// What the tracker uses of the server: its engine, store, flags, metrics and
// SSE wake-ups.
TrackerHost host_of(App& app) {
  TrackerHost host;
  host.engine = app.engine.get();
  host.store = app.store;
  host.draining = &app.draining;
  host.stopping = &app.stopping;
  host.default_timeout_ms = app.config.default_timeout_ms;
  // The server engine's owner id: the lease keeper renews this engine's
  // run leases with it too, and an instance sharing a PostgreSQL database
  // has one of its own (open_app).
  host.engine_owner_id = app.owner_id;
  if (is_postgres_uri(app.config.db)) {
    // Instances sharing the database poll NullTickets one at a time: the
    // holder of the "tracker_poll" lease claims. (Claims would be safe from
    // all of them: NullTickets leases each task to one claimant.)
    host.claim_turn = [&app](int64_t lease_ms) {
      Result<bool> mine = app.store->claim_singleton("tracker_poll", app.owner_id, lease_ms);
      return mine.ok() && *mine;
    };
  }
  host.metrics = &app.metrics;
  host.publish = [&app](const std::string& run_id) { app.hub.publish(run_id); };
  return host;
}

}  // namespace

// Owned through a shared_ptr: task threads, engine listeners and the
// AgentDispatcher keep it alive (or find it gone) instead of pointing at it.
struct Tracker::Impl : std::enable_shared_from_this<Tracker::Impl> {
  Impl(TrackerHost h, TrackerConfig c, std::vector<PipelineDef> p)
      : host(std::move(h)),
        cfg(std::move(c)),
        client(cfg.url, cfg.api_token, cfg.http_timeout_ms),
        workspaces(cfg.workspace_root),
        agents({board, cfg, client, *host.store, host.publish}),
        runner({board, cfg, client, workspaces, *host.engine, *host.store, agents}),
        loop({board, cfg, defs, client, *host.draining, *host.stopping,
              [this](const std::shared_ptr<TrackedTask>& t) { launch_locked(t); },
              // Two polls: one late poll keeps the turn; a dead holder's
              // turn passes to another instance within two intervals.
              [this] { return !host.claim_turn || host.claim_turn(2 * cfg.poll_interval_ms); }}) {
    for (PipelineDef& d : p) defs.push_back(std::make_shared<const PipelineDef>(std::move(d)));
  }

  Status start();
  void stop();
  void launch_locked(const std::shared_ptr<TrackedTask>& t);
  void on_engine_event(const EventRecord& e, bool from_agent_engine);

  const TrackerHost host;
  const TrackerConfig cfg;
  std::vector<std::shared_ptr<const PipelineDef>> defs;
  TrackerClient client;
  WorkspaceManager workspaces;
  TaskBoard board;
  AgentDriver agents;
  TaskRunner runner;
  ClaimLoop loop;
  std::unique_ptr<Engine> agent_engine;  // runs subprocess-mode runs
  uint64_t app_subscription = 0;
  uint64_t agent_subscription = 0;
};

Status Tracker::Impl::start() {
  ORCH_RETURN_IF_ERROR(workspaces.init());
  if (size_t n = workspaces.remove_stale()) {
    tracker_log("removed " + std::to_string(n) + " stale workspace(s) under " + workspaces.root());
  }
  EngineOptions options;
  options.store = host.store;
  options.dispatcher = make_agent_dispatcher(std::shared_ptr<AgentDriver>(shared_from_this(), &agents));
  options.default_timeout_ms = host.default_timeout_ms;
  options.threads = 2;  // bookkeeping only: agent calls run on the tasks' threads
  // Run leases in a shared database then never keep one engine of this
  // process from a run of the other (POST /runs/{id}/cancel, resuming after a crash).
  options.owner_id = host.engine_owner_id;
  ORCH_ASSIGN_OR_RETURN(agent_engine, Engine::open(std::move(options)));
  runner.set_agent_engine(agent_engine.get());
  // An engine may still be inside a listener when unsubscribe() returns, so
  // listeners keep the tracker alive instead of pointing at it.
  std::weak_ptr<Impl> weak = weak_from_this();
  app_subscription = host.engine->subscribe("", [weak](const EventRecord& e) {
    if (auto self = weak.lock()) self->on_engine_event(e, false);
  });
  agent_subscription = agent_engine->subscribe("", [weak](const EventRecord& e) {
    if (auto self = weak.lock()) self->on_engine_event(e, true);
  });
  std::lock_guard<std::mutex> lock(board.mu);
  board.started = true;
  loop.start_locked();
  return Status();
}

void Tracker::Impl::stop() {
  {
    std::lock_guard<std::mutex> lock(board.mu);
    if (!board.started || board.stopping) return;
    board.stopping = true;
    for (auto& [id, t] : board.tasks) board.abort_locked(*t, Abort::kStopping, "orch is shutting down");
    board.poll_cv.notify_all();
    board.live_cv.notify_all();
  }
  loop.join();
  std::vector<std::thread> threads;
  {
    // Task threads cancel their runs and release their leases (each call is
    // bounded by http_timeout_ms, hooks by hook_timeout_ms).
    std::unique_lock<std::mutex> lock(board.mu);
    board.idle_cv.wait(lock, [this] { return board.tasks.empty(); });
    threads.swap(board.finished_threads);
  }
  for (std::thread& th : threads) th.join();
  host.engine->unsubscribe(app_subscription);
  agent_engine->unsubscribe(agent_subscription);
  agent_engine.reset();
}

void Tracker::Impl::launch_locked(const std::shared_ptr<TrackedTask>& t) {
  t->thread = std::thread([self = shared_from_this(), t] { self->runner.run(t); });
}

void Tracker::Impl::on_engine_event(const EventRecord& e, bool from_agent_engine) {
  if (from_agent_engine) {
    // The server's own subscription sees only its engine; keep /metrics and
    // SSE streams in step for the runs of this one.
    Metrics& m = *host.metrics;
    if (e.kind == event_kind::kRunCompleted) m.runs_completed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kRunFailed) m.runs_failed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kStepCompleted) m.steps_completed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kStepFailed) m.steps_failed.fetch_add(1, std::memory_order_relaxed);
    host.publish(e.run_id);
  }
  std::lock_guard<std::mutex> lock(board.mu);
  auto it = board.by_run.find(e.run_id);
  if (it == board.by_run.end()) return;
  TrackedTask& t = *it->second;
  t.activity_ms = steady_ms();
  t.last_activity_wall = wall_ms();
  if (!is_run_end(e.kind) || t.run_id != e.run_id) return;
  const bool owner = (t.execution == "subprocess") == from_agent_engine;
  if (owner) {
    t.run_terminal = true;
    t.cv.notify_all();
  } else if (e.kind == event_kind::kRunCancelled) {
    // POST /runs/{id}/cancel reached the server's engine for a run this
    // tracker's engine drives: stop the agent and end the run here too.
    board.abort_locked(t, Abort::kRunCancelled, "the orch run " + e.run_id + " was cancelled");
  }
}

// ============================================================================
// Tracker

Tracker::Tracker(App& app, TrackerConfig config, std::vector<PipelineDef> pipelines)
    : impl_(std::make_shared<Impl>(host_of(app), std::move(config), std::move(pipelines))) {}

Tracker::~Tracker() { stop(); }

Status Tracker::start() { return impl_->start(); }
void Tracker::stop() { impl_->stop(); }

void Tracker::refresh() {
  std::lock_guard<std::mutex> lock(impl_->board.mu);
  impl_->board.refresh_requested = true;
  impl_->board.poll_cv.notify_all();
}

const TrackerConfig& Tracker::config() const { return impl_->cfg; }

Value Tracker::status_json() const { return tracker_status_view(impl_->board, impl_->cfg, impl_->defs.size()); }
Value Tracker::tasks_json() const { return tracker_tasks_view(impl_->board); }
std::optional<Value> Tracker::task_json(const std::string& task_id) const {
  return tracker_task_view(impl_->board, task_id);
}
Value Tracker::stats_json() const { return tracker_stats_view(impl_->board, impl_->cfg); }

std::string pull_run_resume_veto(const RunRecord& run) {
  // The keys run_config_locked() writes.
  const Value& task_id = run.config["task_id"];
  if (!task_id.is_string() || !run.config["tracker_run_id"].is_string()) return "";
  return "pull-mode run of NullTickets task " + task_id.as_string() +
         " not resumed: the orch instance that held the task's lease stopped; NullTickets offers the task again "
         "once that lease runs out";
}

bool tracker_configured(const App& app) {
  return app.config.tracker.is_object() && app.config.tracker["url"].is_string();
}

Status start_tracker(App& app) {
  if (!tracker_configured(app)) return Status();
  std::string base_dir;
  if (!app.config.config_path.empty()) {
    base_dir = std::filesystem::path(app.config.config_path).parent_path().string();
  }
  ORCH_ASSIGN_OR_RETURN(TrackerConfig config, parse_tracker_config(app.config.tracker, base_dir));
  if (config.url.empty()) return Status();
  ORCH_ASSIGN_OR_RETURN(std::vector<PipelineDef> pipelines, load_pipeline_defs(config));
  if (pipelines.empty()) {
    tracker_log("no pull-mode workflows in " + config.workflows_dir + " or tracker.pipelines; nothing will be claimed");
  }
  tracker_log("pull mode: " + std::to_string(pipelines.size()) + " pipeline workflow(s), polling " + config.url + " every " +
      std::to_string(config.poll_interval_ms) + " ms");
  app.tracker = std::make_unique<Tracker>(app, std::move(config), std::move(pipelines));
  Status s = app.tracker->start();
  if (!s.ok()) app.tracker.reset();
  return s;
}

void stop_tracker(App& app) {
  if (app.tracker) app.tracker->stop();
}

}  // namespace orch::server
