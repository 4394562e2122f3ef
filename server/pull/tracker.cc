// SPDX-License-Identifier: MIT
#include "pull/tracker.h"

#include "orch/thread_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "app.h"
#include "orch/engine.h"
#include "orch/id.h"
#include "orch/template.h"
#include "orch/dispatcher.h"
#include "orch/workflow.h"
#include "pull/subprocess_agent.h"
#include "pull/tracker_client.h"
#include "pull/workspace.h"

namespace orch::server {
namespace {

using Clock = std::chrono::steady_clock;

// The tag of the one node of a subprocess run; only the tracker's own engine
// serves it (after a restart the server's engine fails such a run, clearly).
constexpr const char* kAgentTag = "orch:subprocess";
constexpr size_t kHistory = 100;            // finished tasks kept for /tracker/tasks/{id}
constexpr int64_t kAgentStopGraceMs = 2000;  // SIGTERM → SIGKILL

enum class TaskState {
  kWorkspaceSetup, kSpawning, kRunning, kCompleting, kCompleted, kFailed, kStalled, kCooldown, kRemoving, kCancelled
};

const char* state_name(TaskState s) {
  switch (s) {
    case TaskState::kWorkspaceSetup: return "workspace_setup";
    case TaskState::kSpawning: return "spawning";
    case TaskState::kRunning: return "running";
    case TaskState::kCompleting: return "completing";
    case TaskState::kCompleted: return "completed";
    case TaskState::kFailed: return "failed";
    case TaskState::kStalled: return "stalled";
    case TaskState::kCooldown: return "cooldown";
    case TaskState::kRemoving: return "removing";
    case TaskState::kCancelled: return "cancelled";
  }
  return "running";
}

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

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kSucceeded:
    case Outcome::kFinishedUpstream: return "succeeded";
    case Outcome::kFailed: return "failed";
    case Outcome::kStalled: return "stalled";
    case Outcome::kCancelled:
    case Outcome::kRunCancelled: return "cancelled";
    case Outcome::kLeaseLost: return "lease_lost";
    case Outcome::kStopping: return "stopped";
  }
  return "failed";
}

struct AttemptResult {
  Outcome kind = Outcome::kFailed;
  std::string message;
};

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void log(const std::string& message) { std::cerr << "orch tracker: " << message << "\n"; }

std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

std::string tail(const std::string& s, size_t n) {
  std::string t = s.size() <= n ? s : "..." + s.substr(s.size() - n);
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// The server's engine renders prompts without a pull-mode task in its
// template context, but the task is in the run's config: `task.x` inside
// template tags becomes `config.task.x`, so {{task.title}} works in dispatch
// workflows exactly as in subprocess prompts.
std::string rewrite_task_refs(const std::string& text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string::npos || open + 1 >= text.size()) break;
    char kind = text[open + 1];
    if (kind != '{' && kind != '%') {
      out.append(text, i, open + 1 - i);
      i = open + 1;
      continue;
    }
    size_t close = text.find(kind == '{' ? "}}" : "%}", open + 2);
    if (close == std::string::npos) break;
    out.append(text, i, open + 2 - i);
    const std::string inner = text.substr(open + 2, close - open - 2);
    for (size_t p = 0; p < inner.size(); ++p) {
      bool starts = inner.compare(p, 4, "task") == 0 && (p == 0 || (!is_ident(inner[p - 1]) && inner[p - 1] != '.')) &&
                    (p + 4 == inner.size() || !is_ident(inner[p + 4]));
      if (starts) {
        out += "config.task";
        p += 3;
      } else {
        out += inner[p];
      }
    }
    out.append(text, close, 2);
    i = close + 2;
  }
  if (i < text.size()) out.append(text, i, std::string::npos);
  return out;
}

void rewrite_workflow_task_refs(Value* definition) {
  const Value& current = *definition;  // const: reading must not insert keys
  if (!current["nodes"].is_object()) return;
  Value nodes = current["nodes"];
  Value rewritten = Value::object();
  for (const auto& [name, node] : nodes.as_object()) {
    Value n = node;
    if (n.is_object()) {
      for (const char* key : {"prompt_template", "continuation_prompt"}) {
        if (n[key].is_string()) n.set(key, rewrite_task_refs(n[key].as_string()));
      }
    }
    rewritten.set(name, n);
  }
  definition->set("nodes", rewritten);
}

Value single_node_workflow(const std::string& id, const std::string& node, Value node_def) {
  return Value::object({{"id", id},
                        {"name", id},
                        {"nodes", Value::object({{node, std::move(node_def)}})},
                        {"edges", Value::array({Value::array({"__start__", node}), Value::array({node, "__end__"})})},
                        {"state_schema", Value::object({{"output", Value::object({{"type", "string"}, {"reducer", "last_value"}})}})}});
}

bool port_free(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// States in which the task's work is still ahead or in progress: NullTickets'
// view is compared with the claim only then (not while transitioning or
// cleaning up, when our own transition moves the stage).
bool reconciled(TaskState s) {
  return s == TaskState::kWorkspaceSetup || s == TaskState::kSpawning || s == TaskState::kRunning ||
         s == TaskState::kCooldown;
}

int64_t saturating_add(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }
int64_t saturating_mul(int64_t a, int64_t b) { return b != 0 && a > INT64_MAX / b ? INT64_MAX : a * b; }

}  // namespace

// One claimed task. Fields above the line are fixed at claim time; the rest
// are guarded by Impl::mu.
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
  std::condition_variable cv;      // wakes the task's thread (waits on Impl::mu)
};

struct Tracker::Impl : std::enable_shared_from_this<Tracker::Impl> {
  Impl(App& a, TrackerConfig c, std::vector<PipelineDef> p)
      : app(a), cfg(std::move(c)), client(cfg.url, cfg.api_token, cfg.http_timeout_ms), workspaces(cfg.workspace_root) {
    for (PipelineDef& d : p) defs.push_back(std::make_shared<const PipelineDef>(std::move(d)));
    for (const auto& [stage, limit] : cfg.per_state) per_state_json.set(stage, static_cast<long long>(limit));
    auto continuation = Template::compile(cfg.continuation_prompt);  // validated by parse_tracker_config
    default_continuation = std::make_shared<const Template>(continuation.ok() ? *continuation : Template());
  }

  App& app;
  const TrackerConfig cfg;
  std::vector<std::shared_ptr<const PipelineDef>> defs;
  TrackerClient client;
  WorkspaceManager workspaces;
  Value per_state_json = Value::object();
  std::shared_ptr<const Template> default_continuation;
  std::unique_ptr<Engine> agent_engine;  // runs subprocess-mode runs
  uint64_t app_subscription = 0;
  uint64_t agent_subscription = 0;

  mutable std::mutex mu;
  std::condition_variable poll_cv;  // poll thread: refresh, stop, a task thread to join
  std::condition_variable live_cv;  // liveness thread: new deadlines, stop
  std::condition_variable idle_cv;  // stop(): the last task ended
  bool started = false;
  bool stopping = false;
  bool stopped = false;
  bool refresh_requested = false;
  bool live_dirty = false;
  std::thread poll_thread;
  std::thread live_thread;
  std::map<std::string, std::shared_ptr<TrackedTask>> tasks;   // running, by task id
  std::map<std::string, std::shared_ptr<TrackedTask>> by_run;  // orch run id -> task
  std::deque<std::shared_ptr<TrackedTask>> history;            // finished, newest first
  std::vector<std::thread> finished_threads;
  std::map<std::string, int64_t> attempts;              // per task id, until it succeeds
  std::set<int> ports;
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t cancelled = 0;
  int64_t released = 0;
  std::string last_claim_error;

  // ---- lifecycle ----------------------------------------------------------
  Status start();
  void stop();
  void poll_loop();
  void liveness_loop();
  // Runs `loop` (a thread's whole life) until it returns; an exception it
  // throws restarts it after a pause instead of ending the server.
  void keep_running(const char* where, void (Impl::*loop)());
  // A task thread: run_task, and a failed finish if it throws (stop() waits
  // for every task to finish).
  void run_task_guarded(const std::shared_ptr<TrackedTask>& t);
  void join_finished(std::unique_lock<std::mutex>& lock);

  // ---- NullTickets --------------------------------------------------------
  void claim_all();
  bool can_claim_locked(const std::string& pipeline, const std::string& role) const;
  void admit(const std::shared_ptr<const PipelineDef>& def, const std::string& role, Claim claim);
  void release(const Claim& claim, const std::string& reason);
  void heartbeat(const std::shared_ptr<TrackedTask>& t);
  void reconcile();
  void apply_task_update_locked(TrackedTask& t, const Value& json);
  std::shared_ptr<const PipelineDef> find_def(const std::string& pipeline) const;

  // ---- a task's thread ----------------------------------------------------
  void run_task(const std::shared_ptr<TrackedTask>& t);
  AttemptResult run_attempt(const std::shared_ptr<TrackedTask>& t);
  AttemptResult run_on(const std::shared_ptr<TrackedTask>& t, Engine& engine, std::shared_ptr<const Workflow> wf,
                       const std::string& prompt);
  void serve_agent(const std::shared_ptr<TrackedTask>& t, Engine& engine);
  WorkerReply drive_agent(const std::shared_ptr<TrackedTask>& t, const WorkerRequest& request);
  bool wait_interruptible(const std::shared_ptr<TrackedTask>& t, int64_t ms);
  void finish(const std::shared_ptr<TrackedTask>& t, AttemptResult result);
  std::string complete_upstream(const std::shared_ptr<TrackedTask>& t);
  void fail_upstream(const std::shared_ptr<TrackedTask>& t, const std::string& error);
  void release_claim(const std::shared_ptr<TrackedTask>& t, const std::string& error);
  HookResult hook(const std::shared_ptr<TrackedTask>& t, const char* name, const std::string& script,
                  const std::string& outcome = "");
  std::vector<std::pair<std::string, std::string>> task_env(const std::shared_ptr<TrackedTask>& t);
  AttemptResult abort_result(const TrackedTask& t) const;
  void abort_locked(TrackedTask& t, Abort why, const std::string& message);
  void set_state(const std::shared_ptr<TrackedTask>& t, TaskState s);
  void append_run_event(const std::string& run_id, const std::string& kind, Value data);
  Value run_config(const TrackedTask& t) const;
  // Renders `tpl` with the task, its attempt and run config in context (and
  // `state`, when given).
  Result<std::string> render_for_task(const std::shared_ptr<TrackedTask>& t, const Template& tpl,
                                      const Value* state);
  Result<std::shared_ptr<const Workflow>> dispatch_workflow(const PipelineDef& def) const;
  Result<std::shared_ptr<const Workflow>> agent_workflow(const PipelineDef& def) const;
  int allocate_port();
  void release_port(int port);

  // ---- engines ------------------------------------------------------------
  void on_engine_event(const EventRecord& e, bool from_agent_engine);
  void on_agent_dispatch(const WorkerRequest& request, Dispatcher::Callback done);
  void on_agent_cancel(const std::string& call_id);

  // ---- API ----------------------------------------------------------------
  Value task_json_locked(const TrackedTask& t) const;
};

namespace {

// The only worker of the tracker's own engine: hands each agent call to the
// thread of the task whose run it belongs to.
class AgentDispatcher : public Dispatcher {
 public:
  explicit AgentDispatcher(std::weak_ptr<Tracker::Impl> impl) : impl_(std::move(impl)) {}
  void dispatch(const WorkerRequest& request, Callback done) override;
  void cancel(const std::string& call_id) override;

 private:
  std::weak_ptr<Tracker::Impl> impl_;
};

}  // namespace

void AgentDispatcher::dispatch(const WorkerRequest& request, Callback done) {
  if (auto impl = impl_.lock()) return impl->on_agent_dispatch(request, std::move(done));
  WorkerReply reply;
  reply.status = Status::unavailable("the pull-mode tracker has stopped");
  reply.retryable = false;
  done(std::move(reply));
}

void AgentDispatcher::cancel(const std::string& call_id) {
  if (auto impl = impl_.lock()) impl->on_agent_cancel(call_id);
}

// ============================================================================
// Lifecycle

Status Tracker::Impl::start() {
  ORCH_RETURN_IF_ERROR(workspaces.init());
  if (size_t n = workspaces.remove_stale()) {
    log("removed " + std::to_string(n) + " stale workspace(s) under " + workspaces.root());
  }
  EngineOptions options;
  options.store = app.store;
  options.dispatcher = std::make_shared<AgentDispatcher>(weak_from_this());
  options.default_timeout_ms = app.config.default_timeout_ms;
  options.threads = 2;  // bookkeeping only: agent calls run on the tasks' threads
  // The owner id open_app() gives the server's engine: run leases in a shared
  // database then never keep one engine of this process from a run of the
  // other (POST /runs/{id}/cancel, resuming after a crash).
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  options.owner_id = std::string("orch-serve:") + host + ":" + redacted_db(app.config.db);
  ORCH_ASSIGN_OR_RETURN(agent_engine, Engine::open(std::move(options)));
  // An engine may still be inside a listener when unsubscribe() returns, so
  // listeners keep the tracker alive instead of pointing at it.
  std::weak_ptr<Impl> weak = weak_from_this();
  app_subscription = app.engine->subscribe("", [weak](const EventRecord& e) {
    if (auto self = weak.lock()) self->on_engine_event(e, false);
  });
  agent_subscription = agent_engine->subscribe("", [weak](const EventRecord& e) {
    if (auto self = weak.lock()) self->on_engine_event(e, true);
  });
  std::lock_guard<std::mutex> lock(mu);
  started = true;
  poll_thread = std::thread([this] { keep_running("tracker poll", &Impl::poll_loop); });
  live_thread = std::thread([this] { keep_running("tracker liveness", &Impl::liveness_loop); });
  return Status();
}

void Tracker::Impl::stop() {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!started || stopping) return;
    stopping = true;
    for (auto& [id, t] : tasks) abort_locked(*t, Abort::kStopping, "orch is shutting down");
    poll_cv.notify_all();
    live_cv.notify_all();
  }
  if (poll_thread.joinable()) poll_thread.join();
  if (live_thread.joinable()) live_thread.join();
  std::vector<std::thread> threads;
  {
    // TrackedTask threads cancel their runs and release their leases (each call is
    // bounded by http_timeout_ms, hooks by hook_timeout_ms).
    std::unique_lock<std::mutex> lock(mu);
    idle_cv.wait(lock, [this] { return tasks.empty(); });
    threads.swap(finished_threads);
  }
  for (std::thread& th : threads) th.join();
  app.engine->unsubscribe(app_subscription);
  agent_engine->unsubscribe(agent_subscription);
  agent_engine.reset();
  std::lock_guard<std::mutex> lock(mu);
  stopped = true;
}

void Tracker::Impl::join_finished(std::unique_lock<std::mutex>& lock) {
  if (finished_threads.empty()) return;
  std::vector<std::thread> threads;
  threads.swap(finished_threads);
  lock.unlock();
  for (std::thread& th : threads) th.join();
  lock.lock();
}

void Tracker::Impl::keep_running(const char* where, void (Impl::*loop)()) {
  while (!run_guarded(where, [&] { (this->*loop)(); })) {
    std::unique_lock<std::mutex> lock(mu);
    if (poll_cv.wait_for(lock, std::chrono::seconds(1), [this] { return stopping; })) return;
  }
}

void Tracker::Impl::run_task_guarded(const std::shared_ptr<TrackedTask>& t) {
  if (run_guarded("tracker task", [&] { run_task(t); })) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (t->finished) return;
  }
  run_guarded("tracker task", [&] { finish(t, {Outcome::kFailed, "internal error (see the orch log)"}); });
}

void Tracker::Impl::poll_loop() {
  std::unique_lock<std::mutex> lock(mu);
  auto next_poll = Clock::now();
  for (;;) {
    poll_cv.wait_until(lock, next_poll, [this] { return stopping || refresh_requested || !finished_threads.empty(); });
    join_finished(lock);
    if (stopping) return;
    if (!refresh_requested && Clock::now() < next_poll) continue;
    refresh_requested = false;
    lock.unlock();
    // Reconcile first: a task cancelled upstream frees its slot for this round's claims.
    reconcile();
    claim_all();
    lock.lock();
    next_poll = Clock::now() + std::chrono::milliseconds(cfg.poll_interval_ms);
  }
}

// Heartbeats run on their own timer so that slow claims or task reads never
// delay them, and stalls are seen while a turn is still in flight.
void Tracker::Impl::liveness_loop() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stopping) {
    const int64_t now = steady_ms();
    std::vector<std::shared_ptr<TrackedTask>> due;
    int64_t wake = now + 60000;
    for (auto& [id, t] : tasks) {
      if (t->heartbeat_due_ms <= now) {
        due.push_back(t);
      } else {
        wake = std::min(wake, t->heartbeat_due_ms);
      }
      if (t->state != TaskState::kSpawning && t->state != TaskState::kRunning) continue;
      int64_t last = t->activity_ms;
      if (t->agent) last = std::max(last, t->agent->last_activity_ms());
      if (now - last > cfg.stall_timeout_ms) {
        abort_locked(*t, Abort::kStalled, "no activity for " + std::to_string(now - last) + " ms (stall_timeout_ms " +
                                              std::to_string(cfg.stall_timeout_ms) + ")");
      } else {
        wake = std::min(wake, last + cfg.stall_timeout_ms + 1);
      }
    }
    if (!due.empty()) {
      for (auto& t : due) t->heartbeat_due_ms = INT64_MAX;  // not again until this round answers
      lock.unlock();
      for (auto& t : due) heartbeat(t);
      lock.lock();
      continue;
    }
    live_dirty = false;
    live_cv.wait_until(lock, Clock::now() + std::chrono::milliseconds(std::max<int64_t>(wake - steady_ms(), 1)),
                       [this] { return stopping || live_dirty; });
  }
}

// ============================================================================
// NullTickets

std::shared_ptr<const PipelineDef> Tracker::Impl::find_def(const std::string& pipeline) const {
  for (const auto& d : defs) {
    if (d->pipeline_id == pipeline) return d;
  }
  return nullptr;
}

bool Tracker::Impl::can_claim_locked(const std::string& pipeline, const std::string& role) const {
  if (static_cast<int64_t>(tasks.size()) >= cfg.max_concurrent_tasks) return false;
  auto count = [this](auto pred) {
    int64_t n = 0;
    for (const auto& [id, t] : tasks) n += pred(*t) ? 1 : 0;
    return n;
  };
  if (auto it = cfg.per_pipeline.find(pipeline); it != cfg.per_pipeline.end()) {
    if (count([&](const TrackedTask& t) { return t.pipeline_id == pipeline; }) >= it->second) return false;
  }
  if (auto it = cfg.per_role.find(role); it != cfg.per_role.end()) {
    if (count([&](const TrackedTask& t) { return t.role == role; }) >= it->second) return false;
  }
  return true;
}

void Tracker::Impl::claim_all() {
  for (const auto& def : defs) {
    for (const std::string& role : def->claim_roles) {
      // Up to the global limit per role per round, so capacity fills in one poll.
      for (int64_t n = 0; n < std::max<int64_t>(cfg.max_concurrent_tasks, 1); ++n) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (stopping || app.draining || app.stopping || !can_claim_locked(def->pipeline_id, role)) break;
        }
        auto claim = client.claim(cfg.agent_id, role, cfg.lease_ttl_ms, per_state_json);
        if (!claim.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (claim.status().message() != last_claim_error) log(claim.status().message());
          last_claim_error = claim.status().message();
          break;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          last_claim_error.clear();
        }
        if (!claim->has_value()) break;  // 204: nothing to do for this role
        admit(def, role, std::move(**claim));
      }
    }
  }
}

void Tracker::Impl::release(const Claim& claim, const std::string& reason) {
  // NullTickets has no separate "release": failing the claim's run deletes
  // the lease, so the task is offered again at once instead of after the TTL.
  TrackerReply r = client.fail(claim.run_id, claim.lease_token, "released by orch: " + reason, Value());
  log("released task " + claim.task_id + " (" + reason + ")" + (r.ok() ? "" : ": " + r.describe()));
  std::lock_guard<std::mutex> lock(mu);
  ++released;
}

void Tracker::Impl::admit(const std::shared_ptr<const PipelineDef>& def, const std::string& role, Claim claim) {
  std::string reason;
  std::shared_ptr<const PipelineDef> use = def;
  std::unique_lock<std::mutex> lock(mu);
  const Value& task = claim.task;
  const std::string pipeline = task["pipeline_id"].get_string(def->pipeline_id);
  const std::string stage = task["stage"].get_string("");
  auto count = [this](auto pred) {
    int64_t n = 0;
    for (const auto& [id, t] : tasks) n += pred(*t) ? 1 : 0;
    return n;
  };
  if (stopping || app.stopping) {
    reason = "orch is shutting down";
  } else if (app.draining) {
    reason = "orch is draining";
  } else if (tasks.count(claim.task_id)) {
    reason = "the task is already running on this orch";
  } else {
    // Claims are by role, so a task of another pipeline may come back; it
    // runs under that pipeline's workflow when this orch has one.
    if (pipeline != def->pipeline_id) {
      use = find_def(pipeline);
      if (!use || std::find(use->claim_roles.begin(), use->claim_roles.end(), role) == use->claim_roles.end()) {
        reason = "no pull-mode workflow for pipeline '" + pipeline + "' and role '" + role + "'";
      }
    }
    if (reason.empty()) {
      if (auto it = cfg.per_pipeline.find(pipeline); it != cfg.per_pipeline.end() &&
                                                     count([&](const TrackedTask& t) { return t.pipeline_id == pipeline; }) >= it->second) {
        reason = "per_pipeline limit of " + std::to_string(it->second) + " reached for " + pipeline;
      }
    }
    if (reason.empty()) {
      if (auto it = cfg.per_state.find(stage); it != cfg.per_state.end() &&
                                               count([&](const TrackedTask& t) { return t.claimed_stage == stage; }) >= it->second) {
        reason = "per_state limit of " + std::to_string(it->second) + " reached for stage " + stage;
      }
    }
    if (reason.empty()) {
      auto name = WorkspaceManager::dir_name_for(claim.task_id);
      if (!name.ok()) reason = name.status().message();
    }
  }
  if (!reason.empty()) {
    lock.unlock();
    release(claim, reason);
    return;
  }
  auto t = std::make_shared<TrackedTask>();
  t->task_id = claim.task_id;
  t->pipeline_id = pipeline;
  t->role = role;
  t->def = use;
  t->execution = use->execution;
  t->tracker_run_id = claim.run_id;
  t->lease_id = claim.lease_id;
  t->lease_token = claim.lease_token;
  t->claimed_stage = stage;
  t->started_at_ms = wall_ms();
  t->task = claim.task;
  t->title = task["title"].get_string("");
  if (task["task_version"].is_int()) t->task_version = task["task_version"].as_int();
  t->attempt = ++attempts[t->task_id];
  t->max_turns = use->execution == "subprocess" ? use->max_turns.value_or(cfg.max_turns) : 1;
  t->activity_ms = steady_ms();
  t->last_activity_wall = t->started_at_ms;
  t->lease_expires_at_ms = claim.expires_at_ms;
  t->heartbeat_due_ms = steady_ms() + cfg.heartbeat_interval_ms;
  tasks[t->task_id] = t;
  live_dirty = true;
  live_cv.notify_all();
  log("claimed task " + t->task_id + " (pipeline " + pipeline + ", role " + role + ", stage " + stage + ", attempt " +
      std::to_string(t->attempt) + ")");
  t->thread = std::thread([self = shared_from_this(), t] { self->run_task_guarded(t); });
}

void Tracker::Impl::heartbeat(const std::shared_ptr<TrackedTask>& t) {
  const TrackerReply r = client.heartbeat(t->lease_id, t->lease_token);
  std::lock_guard<std::mutex> lock(mu);
  if (t->finished) return;
  const int64_t now = steady_ms();
  if (r.ok() && r.json["expires_at_ms"].is_int()) {
    t->lease_expires_at_ms = r.json["expires_at_ms"].as_int();
    ++t->heartbeats;
    t->heartbeat_due_ms = now + cfg.heartbeat_interval_ms;
    return;
  }
  if (r.transient()) {
    // Keep the task: try again soon, and give up only once the lease has
    // really run out.
    t->heartbeat_due_ms = now + std::min<int64_t>(cfg.heartbeat_interval_ms, 1000);
    if (t->lease_expires_at_ms > 0 && wall_ms() >= t->lease_expires_at_ms) {
      abort_locked(*t, Abort::kLeaseLost, "lease expired: the last heartbeats got " + r.describe());
    }
    return;
  }
  t->heartbeat_due_ms = INT64_MAX;
  abort_locked(*t, Abort::kLeaseLost,
               "lease lost: heartbeat " + (r.ok() ? std::string("answer without expires_at_ms") : r.describe()));
}

void Tracker::Impl::reconcile() {
  std::vector<std::shared_ptr<TrackedTask>> check;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [id, t] : tasks) {
      if (t->abort == Abort::kNone && reconciled(t->state)) check.push_back(t);
    }
  }
  for (auto& t : check) {
    TrackerReply r = client.get_task(t->task_id);
    // A timeout or a 5xx says nothing about the task: keep it (NullBoiler
    // dropped tasks on any non-2xx).
    if (r.transient()) continue;
    std::lock_guard<std::mutex> lock(mu);
    if (t->finished || t->abort != Abort::kNone || !reconciled(t->state)) continue;
    if (r.status == 404) {
      abort_locked(*t, Abort::kCancelled, "the task was deleted in NullTickets");
    } else if (r.ok() && r.json.is_object()) {
      apply_task_update_locked(*t, r.json);
    }
  }
}

// Compares NullTickets' view of a running task with the claim.
void Tracker::Impl::apply_task_update_locked(TrackedTask& t, const Value& json) {
  const Value& latest = json["latest_run"];
  const bool have_latest = latest.is_object();
  const bool ours = have_latest && latest["id"].get_string("") == t.tracker_run_id;
  const std::string run_status = ours ? latest["status"].get_string("") : "";
  const std::string stage = json["stage"].get_string(t.claimed_stage);
  const std::string pipeline = json["pipeline_id"].get_string(t.pipeline_id);
  const Value& transitions = json["available_transitions"];
  const bool terminal = std::find(cfg.terminal_stages.begin(), cfg.terminal_stages.end(), stage) !=
                            cfg.terminal_stages.end() ||
                        (transitions.is_array() && transitions.size() == 0);
  if (ours && run_status == "completed") {
    abort_locked(t, Abort::kFinishedUpstream, "the task was moved to '" + stage + "' through this claim");
  } else if (ours && run_status == "failed") {
    abort_locked(t, Abort::kLeaseLost, "NullTickets failed this claim's run");
  } else if (pipeline != t.pipeline_id) {
    abort_locked(t, Abort::kCancelled, "the task moved to pipeline '" + pipeline + "' upstream");
  } else if (stage != t.claimed_stage) {
    if (!have_latest && t.execution == "subprocess" && !terminal) {
      // A NullTickets without latest_run: assume, as NullBoiler does, that
      // the agent moved the task itself.
      abort_locked(t, Abort::kFinishedUpstream, "the task was moved to '" + stage + "'");
    } else {
      abort_locked(t, Abort::kCancelled,
                   terminal ? "the task reached terminal stage '" + stage + "' upstream"
                            : "the task moved from '" + t.claimed_stage + "' to '" + stage + "' upstream");
    }
  } else {
    t.task = json;
    t.title = json["title"].get_string(t.title);
    if (json["task_version"].is_int()) t.task_version = json["task_version"].as_int();
  }
}

// ============================================================================
// A task's thread

void Tracker::Impl::abort_locked(TrackedTask& t, Abort why, const std::string& message) {
  if (t.abort != Abort::kNone || t.finished) return;
  t.abort = why;
  t.abort_message = message;
  if (t.agent) t.agent->kill_now();
  t.cv.notify_all();
  if (why != Abort::kStopping) log("task " + t.task_id + ": " + message);
}

AttemptResult Tracker::Impl::abort_result(const TrackedTask& t) const {
  switch (t.abort) {
    case Abort::kCancelled: return {Outcome::kCancelled, t.abort_message};
    case Abort::kLeaseLost: return {Outcome::kLeaseLost, t.abort_message};
    case Abort::kStalled: return {Outcome::kStalled, "subprocess stalled: " + t.abort_message};
    case Abort::kStopping: return {Outcome::kStopping, t.abort_message};
    case Abort::kRunCancelled: return {Outcome::kRunCancelled, t.abort_message};
    case Abort::kFinishedUpstream: return {Outcome::kFinishedUpstream, t.abort_message};
    case Abort::kNone: break;
  }
  return {Outcome::kFailed, "aborted"};
}

void Tracker::Impl::set_state(const std::shared_ptr<TrackedTask>& t, TaskState s) {
  std::lock_guard<std::mutex> lock(mu);
  t->state = s;
  if (s == TaskState::kSpawning || s == TaskState::kRunning) {
    // The stall clock starts when watching starts, not at claim time.
    t->activity_ms = steady_ms();
    live_dirty = true;
    live_cv.notify_all();
  }
}

bool Tracker::Impl::wait_interruptible(const std::shared_ptr<TrackedTask>& t, int64_t ms) {
  std::unique_lock<std::mutex> lock(mu);
  t->cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return t->abort != Abort::kNone || t->engine_cancelled; });
  return t->abort == Abort::kNone && !t->engine_cancelled;
}

std::vector<std::pair<std::string, std::string>> Tracker::Impl::task_env(const std::shared_ptr<TrackedTask>& t) {
  std::lock_guard<std::mutex> lock(mu);
  return {{"ORCH_TASK_ID", t->task_id},
          {"ORCH_TASK_TITLE", t->title},
          {"ORCH_TASK_STAGE", t->claimed_stage},
          {"ORCH_PIPELINE_ID", t->pipeline_id},
          {"ORCH_AGENT_ROLE", t->role},
          {"ORCH_EXECUTION", t->execution},
          {"ORCH_WORKSPACE", t->workspace},
          {"ORCH_ATTEMPT", std::to_string(t->attempt)},
          {"ORCH_RUN_ID", t->run_id},
          {"ORCH_TRACKER_URL", cfg.url},
          {"ORCH_TRACKER_RUN_ID", t->tracker_run_id}};
}

HookResult Tracker::Impl::hook(const std::shared_ptr<TrackedTask>& t, const char* name, const std::string& script,
                               const std::string& outcome) {
  if (script.empty()) return HookResult();
  auto env = task_env(t);
  if (!outcome.empty()) env.emplace_back("ORCH_OUTCOME", outcome);
  std::string cwd;
  {
    std::lock_guard<std::mutex> lock(mu);
    cwd = t->workspace;
  }
  HookResult r = run_hook(name, script, cwd, env, cfg.hook_timeout_ms, cfg.inherit_env);
  if (!r.ok) log("task " + t->task_id + ": " + r.error);
  return r;
}

void Tracker::Impl::run_task(const std::shared_ptr<TrackedTask>& t) {
  AttemptResult result;
  for (;;) {
    result = run_attempt(t);
    bool has_workspace;
    {
      std::lock_guard<std::mutex> lock(mu);
      has_workspace = !t->workspace.empty();
    }
    if (has_workspace) (void)hook(t, "after_run", cfg.hooks.after_run, outcome_name(result.kind));
    const PipelineDef& def = *t->def;
    bool retry = false;
    int64_t delay = 0;
    if (result.kind == Outcome::kFailed || result.kind == Outcome::kStalled) {
      std::lock_guard<std::mutex> lock(mu);
      // A stall ends only its attempt; any other abort ends the task.
      const bool retryable_abort = t->abort == Abort::kNone || t->abort == Abort::kStalled;
      retry = def.retry_on_failure && t->attempt < def.retry_max_attempts && retryable_abort && !stopping;
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
    log("task " + t->task_id + ": attempt " + std::to_string(t->attempt) + " failed (" + result.message +
        "); retrying in " + std::to_string(delay) + " ms");
    if (!wait_interruptible(t, delay)) {
      std::lock_guard<std::mutex> lock(mu);
      result = abort_result(*t);
      break;
    }
    std::lock_guard<std::mutex> lock(mu);
    t->attempt = ++attempts[t->task_id];
    t->current_turn = 0;
    t->run_terminal = false;
    t->has_request = false;
    t->serving_closed = false;
    t->engine_cancelled = false;
  }
  finish(t, std::move(result));
}

AttemptResult Tracker::Impl::run_attempt(const std::shared_ptr<TrackedTask>& t) {
  set_state(t, TaskState::kWorkspaceSetup);
  auto ws = workspaces.prepare(t->task_id);
  if (!ws.ok()) return {Outcome::kFailed, "workspace: " + ws.status().message()};
  {
    std::lock_guard<std::mutex> lock(mu);
    t->workspace = ws->path;
  }
  if (ws->fresh) {
    HookResult h = hook(t, "after_create", cfg.hooks.after_create);
    if (!h.ok) return {Outcome::kFailed, h.error};
  }
  HookResult h = hook(t, "before_run", cfg.hooks.before_run);
  if (!h.ok) return {Outcome::kFailed, h.error};
  {
    std::lock_guard<std::mutex> lock(mu);
    if (t->abort != Abort::kNone) return abort_result(*t);
  }
  const PipelineDef& def = *t->def;
  if (t->execution == "dispatch") {
    auto wf = dispatch_workflow(def);
    if (!wf.ok()) return {Outcome::kFailed, wf.status().message()};
    return run_on(t, *app.engine, *wf, "");
  }
  // The first prompt is rendered here, with the task and attempt in context.
  std::string prompt;
  {
    auto rendered = render_for_task(t, *def.prompt, nullptr);
    if (!rendered.ok()) return {Outcome::kFailed, "prompt_template: " + rendered.status().message()};
    prompt = std::move(rendered).value();
  }
  auto wf = agent_workflow(def);
  if (!wf.ok()) return {Outcome::kFailed, wf.status().message()};
  return run_on(t, *agent_engine, *wf, prompt);
}

Result<std::string> Tracker::Impl::render_for_task(const std::shared_ptr<TrackedTask>& t, const Template& tpl,
                                                   const Value* state) {
  Value config;
  Value task_json;
  TemplateContext tc;
  {
    std::lock_guard<std::mutex> lock(mu);
    config = run_config(*t);
    task_json = t->task;
    tc.attempt = t->attempt;
  }
  tc.state = state;
  tc.extra_roots = {{"task", &task_json}};
  tc.input = &task_json;
  tc.config = &config;
  return tpl.render(tc);
}

Value Tracker::Impl::run_config(const TrackedTask& t) const {
  return Value::object({{"task_id", t.task_id},
                        {"task", t.task},
                        {"attempt", static_cast<long long>(t.attempt)},
                        {"pipeline_id", t.pipeline_id},
                        {"agent_role", t.role},
                        {"execution", t.execution},
                        {"workspace", t.workspace},
                        {"tracker_run_id", t.tracker_run_id}});
}

Result<std::shared_ptr<const Workflow>> Tracker::Impl::dispatch_workflow(const PipelineDef& def) const {
  Value definition;
  if (!def.workflow.is_null()) {
    definition = def.workflow;
  } else if (!def.workflow_id.empty()) {
    auto stored = app.store->get_workflow(def.workflow_id);
    if (!stored.ok()) {
      return Status::not_found("workflow '" + def.workflow_id + "' named by " + def.source + " is not stored");
    }
    definition = stored->definition;
  } else {
    // A NullBoiler dispatch file: one task node with its prompt and tags.
    Value tags = Value::array();
    for (const std::string& tag : def.worker_tags) tags.push_back(tag);
    definition = single_node_workflow(def.id, "dispatch",
                                      Value::object({{"type", "task"},
                                                     {"prompt_template", *def.prompt_template},
                                                     {"worker_tags", tags},
                                                     {"output_key", "output"}}));
  }
  if (!definition["id"].is_string()) definition.set("id", def.workflow_id.empty() ? def.id : def.workflow_id);
  rewrite_workflow_task_refs(&definition);
  return parse_workflow(definition);
}

Result<std::shared_ptr<const Workflow>> Tracker::Impl::agent_workflow(const PipelineDef& def) const {
  // The node's deadline covers the whole agent: health checks and every turn.
  const int64_t turns = def.max_turns.value_or(cfg.max_turns);
  const int64_t turn_timeout = def.turn_timeout_ms.value_or(cfg.turn_timeout_ms);
  int64_t budget = saturating_mul(cfg.health_check_retries, saturating_add(cfg.health_check_interval_ms, cfg.http_timeout_ms));
  budget = saturating_add(budget, saturating_mul(turns, saturating_add(turn_timeout, cfg.http_timeout_ms)));
  budget = std::min<int64_t>(saturating_add(budget, 60000), INT64_MAX / 4);
  return parse_workflow(single_node_workflow(def.id, "agent",
                                             Value::object({{"type", "task"},
                                                            {"prompt_template", "{{config.prompt}}"},
                                                            {"worker_tags", Value::array({kAgentTag})},
                                                            {"output_key", "output"},
                                                            {"timeout_ms", static_cast<long long>(budget)}})));
}

AttemptResult Tracker::Impl::run_on(const std::shared_ptr<TrackedTask>& t, Engine& engine,
                                    std::shared_ptr<const Workflow> wf, const std::string& prompt) {
  const bool subprocess = t->execution == "subprocess";
  const std::string run_id = new_uuid();
  RunOptions options;
  options.run_id = run_id;
  options.workflow_id = t->def->workflow_id.empty() ? t->def->id : t->def->workflow_id;
  {
    std::lock_guard<std::mutex> lock(mu);
    t->run_id = run_id;
    t->run_ids.push_back(run_id);
    t->run_terminal = false;
    by_run[run_id] = t;
    t->state = subprocess ? TaskState::kSpawning : TaskState::kRunning;
    t->current_turn = subprocess ? 0 : 1;
    t->activity_ms = steady_ms();
    live_dirty = true;
    live_cv.notify_all();
    options.input = t->task;
    options.config = run_config(*t);
  }
  if (subprocess) options.config.set("prompt", prompt);
  auto launched = engine.start_run(std::move(wf), std::move(options));
  if (!launched.ok()) return {Outcome::kFailed, "cannot start the orch run: " + launched.status().message()};
  if (subprocess) serve_agent(t, engine);

  // Wait for the run to end. Aborts that take the task away cancel the run;
  // a stalled agent's run fails through its answer instead.
  {
    std::unique_lock<std::mutex> lock(mu);
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
  std::lock_guard<std::mutex> lock(mu);
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

// Subprocess mode: the tracker's engine calls the AgentDispatcher, which
// parks the call here; this thread runs the agent and answers the call.
void Tracker::Impl::serve_agent(const std::shared_ptr<TrackedTask>& t, Engine& engine) {
  WorkerRequest request;
  Dispatcher::Callback done;
  std::string run_id;
  {
    std::unique_lock<std::mutex> lock(mu);
    t->cv.wait(lock, [&] { return t->has_request || t->run_terminal || t->abort != Abort::kNone; });
    run_id = t->run_id;
    if (!t->has_request) {
      t->serving_closed = true;  // a late call is answered by on_agent_dispatch
      if (t->run_terminal) return;
      lock.unlock();
      (void)engine.cancel_run(run_id);
      return;
    }
    request = t->request;
    done = std::move(t->done);
    t->done = nullptr;
  }
  WorkerReply reply = drive_agent(t, request);
  Abort abort;
  {
    std::lock_guard<std::mutex> lock(mu);
    abort = t->abort;
    t->serving_closed = true;
  }
  if (abort != Abort::kNone && abort != Abort::kStalled && abort != Abort::kFinishedUpstream) {
    // Cancel first, so the run ends cancelled rather than failed by the reply.
    (void)engine.cancel_run(run_id);
  }
  done(std::move(reply));
}

WorkerReply Tracker::Impl::drive_agent(const std::shared_ptr<TrackedTask>& t, const WorkerRequest& request) {
  const PipelineDef& def = *t->def;
  WorkerReply reply;
  auto fail = [&reply](const std::string& message) {
    reply.status = Status::unavailable(message);
    reply.retryable = false;
    return reply;
  };
  const int64_t max_turns = def.max_turns.value_or(cfg.max_turns);
  const int64_t turn_timeout = def.turn_timeout_ms.value_or(cfg.turn_timeout_ms);
  const std::string step_id = request.step_id;

  SubprocessAgent::Options options;
  options.command = def.command.empty() ? cfg.command : def.command;
  options.args = def.args ? *def.args : cfg.args;
  options.port = allocate_port();
  if (options.port == 0) {
    return fail("no free port in " + std::to_string(cfg.base_port) + ".." + std::to_string(cfg.base_port + 999));
  }
  options.token = new_uuid();
  options.env = task_env(t);
  options.inherit_env = cfg.inherit_env;
  {
    std::lock_guard<std::mutex> lock(mu);
    options.workdir = t->workspace;
    // What an agent needs to report on (or move) its own task.
    options.env.emplace_back("ORCH_LEASE_TOKEN", t->lease_token);
  }
  options.env.emplace_back("ORCH_AGENT_PORT", std::to_string(options.port));
  options.env.emplace_back("ORCH_AGENT_TOKEN", options.token);
  const int port = options.port;
  auto spawned = SubprocessAgent::start(std::move(options));
  if (!spawned.ok()) {
    release_port(port);
    return fail(spawned.status().message());
  }
  std::shared_ptr<SubprocessAgent> agent(std::move(spawned).value());
  {
    std::lock_guard<std::mutex> lock(mu);
    t->agent = agent;
    if (t->abort != Abort::kNone) agent->kill_now();
  }
  // Whatever happens below, the agent and its port go at the end.
  struct Cleanup {
    Tracker::Impl* self;
    const std::shared_ptr<TrackedTask>& task;
    std::shared_ptr<SubprocessAgent> agent;
    int port;
    ~Cleanup() {
      agent->stop(kAgentStopGraceMs);
      {
        std::lock_guard<std::mutex> lock(self->mu);
        task->agent.reset();
      }
      self->release_port(port);
    }
  } cleanup{this, t, agent, port};
  auto stop_reason = [&]() -> std::string {
    std::lock_guard<std::mutex> lock(mu);
    if (t->abort == Abort::kStalled) return "subprocess stalled: " + t->abort_message;
    if (t->abort != Abort::kNone) return t->abort_message;
    if (t->engine_cancelled) return "the orch run abandoned the agent call";
    return "";
  };
  auto with_output = [&agent](std::string message) {
    std::string out = tail(agent->output_tail(), 300);
    if (!out.empty()) message += "; agent output: " + out;
    return message;
  };

  append_run_event(request.run_id, "agent.spawned",
                   Value::object({{"step_id", step_id}, {"pid", static_cast<long long>(agent->pid())}, {"port", port}}));
  (void)client.post_event(t->tracker_run_id, t->lease_token, "agent_started", Value::object({{"port", port}}));

  Status health = Status::unavailable("not checked");
  for (int64_t i = 0; i < cfg.health_check_retries; ++i) {
    if (!stop_reason().empty()) break;
    health = agent->check_health(std::min<int64_t>(cfg.http_timeout_ms, 2000));
    if (health.ok() || agent->exited()) break;
    if (!wait_interruptible(t, cfg.health_check_interval_ms)) break;
  }
  if (std::string why = stop_reason(); !why.empty()) return fail(why);
  if (!health.ok()) {
    std::string message = "agent on port " + std::to_string(port) + " not healthy after " +
                          std::to_string(cfg.health_check_retries) + " checks: " + health.message();
    if (agent->exited()) message += " (" + agent->describe_exit() + ")";
    return fail(with_output(message));
  }
  set_state(t, TaskState::kRunning);

  std::string output;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  for (int64_t turn = 1; turn <= max_turns; ++turn) {
    std::string prompt;
    if (turn == 1) {
      prompt = request.prompt;
    } else {
      Value state = Value::object({{"turn", static_cast<long long>(turn)}, {"last_output", output}});
      const Template& tpl = def.continuation ? *def.continuation : *default_continuation;
      auto rendered = render_for_task(t, tpl, &state);
      if (!rendered.ok()) return fail("continuation_prompt: " + rendered.status().message());
      prompt = std::move(rendered).value();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      t->current_turn = turn;
    }
    auto answer = agent->send_turn(prompt, turn_timeout);
    {
      std::lock_guard<std::mutex> lock(mu);
      t->last_activity_wall = wall_ms();
      if (t->abort == Abort::kFinishedUpstream) break;  // the agent moved the task: done
    }
    if (std::string why = stop_reason(); !why.empty()) return fail(with_output(why));
    if (!answer.ok()) {
      if (agent->wait_exit(500)) {
        return fail(with_output("agent exited (" + agent->describe_exit() + ") during turn " + std::to_string(turn)));
      }
      return fail(with_output("turn " + std::to_string(turn) + " failed: " + answer.status().message()));
    }
    output = answer->output;
    const Value& usage = answer->usage;
    input_tokens += usage["input_tokens"].get_int(0);
    output_tokens += usage["output_tokens"].get_int(0);
    append_run_event(request.run_id, "agent.turn",
                     Value::object({{"step_id", step_id},
                                    {"node", request.node_name},
                                    {"turn", static_cast<long long>(turn)},
                                    {"done", answer->done},
                                    {"output", clip(output, 2000)}}));
    (void)client.post_event(t->tracker_run_id, t->lease_token, "turn_completed",
                            Value::object({{"turn", static_cast<long long>(turn)}}));
    if (answer->done || turn == max_turns) break;
    // Did the agent move the task itself (NullBoiler's success signal)?
    TrackerReply fresh = client.get_task(t->task_id);
    if (fresh.ok() && fresh.json.is_object()) {
      std::lock_guard<std::mutex> lock(mu);
      apply_task_update_locked(*t, fresh.json);
      if (t->abort == Abort::kFinishedUpstream) break;
    }
    if (std::string why = stop_reason(); !why.empty()) return fail(why);
  }
  reply.output = output;
  reply.envelope = Value::object();
  if (input_tokens || output_tokens) {
    reply.envelope.set("usage", Value::object({{"input_tokens", static_cast<long long>(input_tokens)},
                                               {"output_tokens", static_cast<long long>(output_tokens)}}));
  }
  return reply;
}

std::string Tracker::Impl::complete_upstream(const std::shared_ptr<TrackedTask>& t) {
  std::string trigger = t->def->success_trigger;
  if (trigger.empty()) {
    const TrackerReply fresh = client.get_task(t->task_id);
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
    std::lock_guard<std::mutex> lock(mu);
    stage = t->claimed_stage;
    version = t->task_version;
    usage = t->usage;
  }
  TrackerReply r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    r = client.transition(t->tracker_run_id, t->lease_token, trigger, stage, version, usage);
    if (!r.transient()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
  }
  if (!r.ok()) return "transition '" + trigger + "' failed: " + r.describe();
  std::lock_guard<std::mutex> lock(mu);
  const Value& answer = r.json;
  if (answer["new_stage"].is_string()) t->task.set("stage", answer["new_stage"]);
  log("task " + t->task_id + " completed (" + trigger + " -> " + answer["new_stage"].get_string("?") + ")");
  return "";
}

void Tracker::Impl::fail_upstream(const std::shared_ptr<TrackedTask>& t, const std::string& error) {
  const std::string& trigger = t->def->failure_trigger;
  if (!trigger.empty()) {
    // on_failure.transition_to is used when the task's stage offers it;
    // otherwise the run is failed as NullBoiler always did.
    const TrackerReply fresh = client.get_task(t->task_id);
    bool offered = false;
    if (fresh.ok() && fresh.json["available_transitions"].is_array()) {
      for (const Value& tr : fresh.json["available_transitions"].as_array()) offered |= tr["trigger"].get_string("") == trigger;
    }
    if (offered) {
      std::string stage;
      std::optional<int64_t> version;
      {
        std::lock_guard<std::mutex> lock(mu);
        stage = t->claimed_stage;
        version = fresh.json["task_version"].is_int() ? std::optional<int64_t>(fresh.json["task_version"].as_int())
                                                      : t->task_version;
      }
      TrackerReply r = client.transition(t->tracker_run_id, t->lease_token, trigger, stage, version, Value());
      if (r.ok()) return;
      log("task " + t->task_id + ": on_failure transition '" + trigger + "' failed: " + r.describe());
    }
  }
  release_claim(t, error);
}

void Tracker::Impl::release_claim(const std::shared_ptr<TrackedTask>& t, const std::string& error) {
  Value usage;
  {
    std::lock_guard<std::mutex> lock(mu);
    usage = t->usage;
  }
  TrackerReply r = client.fail(t->tracker_run_id, t->lease_token, error, usage);
  if (!r.ok()) log("task " + t->task_id + ": POST /runs/" + t->tracker_run_id + "/fail: " + r.describe());
}

void Tracker::Impl::finish(const std::shared_ptr<TrackedTask>& t, AttemptResult result) {
  bool keep_workspace = false;
  TaskState final_state = TaskState::kFailed;
  bool count_completed = false;
  bool count_failed = false;
  bool count_cancelled = false;
  if (result.kind == Outcome::kSucceeded) {
    set_state(t, TaskState::kCompleting);
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
    std::lock_guard<std::mutex> lock(mu);
    workspace = t->workspace;
    if (result.kind == Outcome::kSucceeded || result.kind == Outcome::kFinishedUpstream) {
      t->error.clear();  // an earlier attempt's failure no longer describes the task
    } else {
      t->error = result.message;
    }
  }
  if (!workspace.empty() && !keep_workspace) {
    set_state(t, TaskState::kRemoving);
    (void)hook(t, "before_remove", cfg.hooks.before_remove);
    Status removed = workspaces.remove(workspace);
    if (!removed.ok()) log("task " + t->task_id + ": " + removed.message());
  }
  Dispatcher::Callback orphan;
  std::unique_lock<std::mutex> lock(mu);
  t->state = final_state;
  t->finished = true;
  t->ended_at_ms = wall_ms();
  orphan = std::move(t->done);
  completed += count_completed;
  failed += count_failed;
  cancelled += count_cancelled;
  if (count_completed) attempts.erase(t->task_id);
  tasks.erase(t->task_id);
  for (const std::string& id : t->run_ids) by_run.erase(id);
  history.push_front(t);
  if (history.size() > kHistory) history.pop_back();
  finished_threads.push_back(std::move(t->thread));
  if (final_state != TaskState::kCompleted) {
    log("task " + t->task_id + " " + state_name(final_state) + (t->error.empty() ? "" : ": " + t->error));
  }
  poll_cv.notify_all();
  idle_cv.notify_all();
  lock.unlock();
  if (orphan) {
    WorkerReply reply;
    reply.status = Status::cancelled("the pull-mode task ended");
    reply.retryable = false;
    orphan(std::move(reply));
  }
}

void Tracker::Impl::append_run_event(const std::string& run_id, const std::string& kind, Value data) {
  EventRecord e;
  e.run_id = run_id;
  e.kind = kind;
  e.data = std::move(data);
  e.created_at_ms = wall_ms();
  if (app.store->append_event(std::move(e)).ok()) app.hub.publish(run_id);
}

int Tracker::Impl::allocate_port() {
  std::lock_guard<std::mutex> lock(mu);
  for (int64_t p = cfg.base_port; p < cfg.base_port + 1000; ++p) {
    int port = static_cast<int>(p);
    // Ask the OS too: another program may hold a port of the range.
    if (!ports.count(port) && port_free(port)) {
      ports.insert(port);
      return port;
    }
  }
  return 0;
}

void Tracker::Impl::release_port(int port) {
  std::lock_guard<std::mutex> lock(mu);
  ports.erase(port);
}

// ============================================================================
// Engines

void Tracker::Impl::on_engine_event(const EventRecord& e, bool from_agent_engine) {
  if (from_agent_engine) {
    // The server's own subscription sees only its engine; keep /metrics and
    // SSE streams in step for the runs of this one.
    Metrics& m = app.metrics;
    if (e.kind == "run.completed") m.runs_completed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == "run.failed") m.runs_failed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == "step.completed") m.steps_completed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == "step.failed") m.steps_failed.fetch_add(1, std::memory_order_relaxed);
    app.hub.publish(e.run_id);
  }
  std::lock_guard<std::mutex> lock(mu);
  auto it = by_run.find(e.run_id);
  if (it == by_run.end()) return;
  TrackedTask& t = *it->second;
  t.activity_ms = steady_ms();
  t.last_activity_wall = wall_ms();
  const bool terminal = e.kind == "run.completed" || e.kind == "run.failed" || e.kind == "run.cancelled";
  if (!terminal || t.run_id != e.run_id) return;
  const bool owner = (t.execution == "subprocess") == from_agent_engine;
  if (owner) {
    t.run_terminal = true;
    t.cv.notify_all();
  } else if (e.kind == "run.cancelled") {
    // POST /runs/{id}/cancel reached the server's engine for a run this
    // tracker's engine drives: stop the agent and end the run here too.
    abort_locked(t, Abort::kRunCancelled, "the orch run " + e.run_id + " was cancelled");
  }
}

void Tracker::Impl::on_agent_dispatch(const WorkerRequest& request, Dispatcher::Callback done) {
  std::unique_lock<std::mutex> lock(mu);
  auto it = by_run.find(request.run_id);
  if (it == by_run.end() || it->second->has_request || it->second->serving_closed) {
    lock.unlock();
    WorkerReply reply;
    reply.status = Status::unavailable("no pull-mode task holds run " + request.run_id +
                                       " (its agent is gone, e.g. after a restart)");
    reply.retryable = false;
    done(std::move(reply));
    return;
  }
  TrackedTask& t = *it->second;
  t.has_request = true;
  t.request = request;
  t.done = std::move(done);
  t.step_id = request.step_id;
  t.cv.notify_all();
}

void Tracker::Impl::on_agent_cancel(const std::string& call_id) {
  const std::string step_id(step_of_call_id(call_id));
  std::lock_guard<std::mutex> lock(mu);
  for (auto& [id, t] : tasks) {
    if (t->step_id != step_id || !t->has_request) continue;
    t->engine_cancelled = true;
    if (t->agent) t->agent->kill_now();
    t->cv.notify_all();
  }
}

// ============================================================================
// API

Value Tracker::Impl::task_json_locked(const TrackedTask& t) const {
  Value v = Value::object({{"task_id", t.task_id},
                           {"task_title", t.title},
                           {"pipeline_id", t.pipeline_id},
                           {"agent_role", t.role},
                           {"execution", t.execution},
                           {"current_turn", static_cast<long long>(t.current_turn)},
                           {"max_turns", static_cast<long long>(t.max_turns)},
                           {"started_at_ms", static_cast<long long>(t.started_at_ms)},
                           {"last_activity_ms", static_cast<long long>(t.last_activity_wall)},
                           {"state", state_name(t.state)},
                           {"attempt", static_cast<long long>(t.attempt)},
                           {"run_id", t.run_id.empty() ? Value() : Value(t.run_id)},
                           {"tracker_run_id", t.tracker_run_id},
                           {"stage", t.claimed_stage},
                           {"workspace", t.workspace.empty() ? Value() : Value(t.workspace)},
                           {"heartbeats", static_cast<long long>(t.heartbeats)}});
  if (!t.error.empty()) v.set("error", t.error);
  if (t.finished) v.set("ended_at_ms", static_cast<long long>(t.ended_at_ms));
  return v;
}

// ============================================================================
// Tracker

Tracker::Tracker(App& app, TrackerConfig config, std::vector<PipelineDef> pipelines)
    : impl_(std::make_shared<Impl>(app, std::move(config), std::move(pipelines))) {}

Tracker::~Tracker() { stop(); }

Status Tracker::start() { return impl_->start(); }
void Tracker::stop() { impl_->stop(); }

void Tracker::refresh() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->refresh_requested = true;
  impl_->poll_cv.notify_all();
}

const TrackerConfig& Tracker::config() const { return impl_->cfg; }

Value Tracker::status_json() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Value running = Value::array();
  for (const auto& [id, t] : impl_->tasks) running.push_back(impl_->task_json_locked(*t));
  return Value::object({{"mode", "pull"},
                        {"running_count", static_cast<long long>(impl_->tasks.size())},
                        {"max_concurrent", static_cast<long long>(impl_->cfg.max_concurrent_tasks)},
                        {"completed_count", static_cast<long long>(impl_->completed)},
                        {"failed_count", static_cast<long long>(impl_->failed)},
                        {"poll_interval_ms", static_cast<long long>(impl_->cfg.poll_interval_ms)},
                        {"running", running},
                        {"cancelled_count", static_cast<long long>(impl_->cancelled)},
                        {"released_count", static_cast<long long>(impl_->released)},
                        {"pipelines", static_cast<long long>(impl_->defs.size())}});
}

Value Tracker::tasks_json() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Value out = Value::array();
  for (const auto& [id, t] : impl_->tasks) out.push_back(impl_->task_json_locked(*t));
  return out;
}

std::optional<Value> Tracker::task_json(const std::string& task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (auto it = impl_->tasks.find(task_id); it != impl_->tasks.end()) return impl_->task_json_locked(*it->second);
  for (const auto& t : impl_->history) {
    if (t->task_id == task_id) return impl_->task_json_locked(*t);
  }
  return std::nullopt;
}

Value Tracker::stats_json() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const int64_t running = static_cast<int64_t>(impl_->tasks.size());
  return Value::object({{"running", static_cast<long long>(running)},
                        {"completed", static_cast<long long>(impl_->completed)},
                        {"failed", static_cast<long long>(impl_->failed)},
                        {"total", static_cast<long long>(running + impl_->completed + impl_->failed + impl_->cancelled)},
                        {"max_concurrent", static_cast<long long>(impl_->cfg.max_concurrent_tasks)},
                        {"cancelled", static_cast<long long>(impl_->cancelled)}});
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
    log("no pull-mode workflows in " + config.workflows_dir + " or tracker.pipelines; nothing will be claimed");
  }
  log("pull mode: " + std::to_string(pipelines.size()) + " pipeline workflow(s), polling " + config.url + " every " +
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
