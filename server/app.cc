// SPDX-License-Identifier: MIT
#include "app.h"

#include "callbacks.h"
#include "lease_keeper.h"
#include "private_files.h"
#include "log/log.h"
#include "log/run_log.h"
#include "retention.h"
#include "run_commands.h"
#include "orch/event_kinds.h"
#include "orch/async_workers.h"
#include "orch/http_workers.h"
#include "orch/postgres_store.h"
#include "pull/tracker.h"
#include "telemetry/otlp_exporter.h"
#include "worker_book.h"
#include "worker_health_share.h"

#include <unistd.h>

#include <cctype>
#include <filesystem>

#if __has_include("orch/sqlite_store.h")
#include "orch/sqlite_store.h"
#define ORCH_HAVE_SQLITE_STORE 1
#endif

namespace orch::server {

App::App() = default;
App::~App() {
  leases.reset();  // takes runs over through the engine: stopped first
  {
    std::lock_guard<std::mutex> lock(store_watch_mu);
    store_watch.reset();  // wakes the relay
  }
  commands.reset();     // applies calls through the engine
  retention.reset();
  tracker.reset();  // its runs and agents use the engine and the store
  callbacks.reset();
  if (engine && engine_subscription) engine->unsubscribe(engine_subscription);
}

void App::follow_run(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(store_watch_mu);
  if (store_watch) store_watch->follow(run_id);
}

void App::unfollow_run(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(store_watch_mu);
  if (store_watch) store_watch->unfollow(run_id);
}

std::string async_instance_name(const ServerConfig& config) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  // FNV-1a of the database, and of the state dir when one is configured:
  // instances sharing a database (PostgreSQL) each have their own state dir,
  // and must not share a broker client id or a reply topic.
  uint64_t h = 1469598103934665603ull;
  const std::string identity = config.state_dir.empty() ? config.db : config.db + "\n" + config.state_dir;
  for (char ch : identity) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  std::string name = std::string(host) + "-" + std::to_string(h % 1000000007ull);
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-') ch = '-';
  }
  return name;
}

Result<std::shared_ptr<Store>> open_store(const ServerConfig& config) {
  if (config.db == ":memory:") return std::shared_ptr<Store>(new_memory_store());
  if (is_postgres_uri(config.db)) {
    auto store = new_postgres_store(config.db, config.postgres);
    if (!store.ok()) {
      return Status(store.status().code(), "opening " + redacted_db(config.db) + ": " + store.status().message());
    }
    return std::shared_ptr<Store>(std::move(store).value());
  }
#ifdef ORCH_HAVE_SQLITE_STORE
  // Directories made for it are private (the file itself is created 0600).
  (void)make_private_dirs(std::filesystem::path(config.db).parent_path().string());
  return open_sqlite_store(config.db);
#else
  return Status::unimplemented("the SQLite store is not built yet; use --db :memory:");
#endif
}

Result<std::unique_ptr<App>> open_app(const ServerConfig& config, std::shared_ptr<Dispatcher> dispatcher) {
  ORCH_RETURN_IF_ERROR(check_config(config));
  auto app = std::make_unique<App>();
  app->config = config;
  const bool postgres = is_postgres_uri(config.db);
  ORCH_ASSIGN_OR_RETURN(app->store, open_store(config));
  // Local files (crash log, async replies in flight): in state_dir, else
  // next to a SQLite file; a PostgreSQL database has no "next to" (and its
  // instances must not share one), so without state_dir there are none.
  std::string state_dir = config.state_dir;
  if (state_dir.empty() && !postgres && config.db != ":memory:") {
    state_dir = std::filesystem::path(config.db).parent_path().string();
    if (state_dir.empty()) state_dir = ".";
  }
  if (!state_dir.empty()) (void)make_private_dirs(state_dir);
  auto clock = Clock::system();
  WorkerRegistryOptions registry_options;
  registry_options.clock = clock;
  registry_options.failure_threshold = static_cast<int>(config.worker_failure_threshold);
  registry_options.circuit_cooldown_ms = config.worker_circuit_breaker_ms;
  registry_options.default_timeout_ms = config.default_timeout_ms;
  registry_options.health_check_interval_ms = config.health_check_interval_ms;
  registry_options.host_policy = config.network;
  if (postgres) {
    // Other instances' GET /rate-limits show what the workers told this one.
    auto share = std::make_shared<RateLimitShare>(app->store);
    app->rate_limit_share = share;
    registry_options.on_rate_limit = [share](const WorkerRateLimit& limit) { share->report(limit); };
  }
  // The owner id first: the shared periodic work below leases by it.
  // On PostgreSQL each process has its own owner id (instances on one host,
  // or a restarted one, must fence each other); the runs of a previous
  // process are taken over once its leases run out (recover() at start,
  // then the lease keeper). A
  // SQLite file has one orch serve at a time: a stable id (host + file)
  // lets a restarted server take its runs back at once.
  if (postgres || config.db == ":memory:") {
    app->owner_id = new_instance_owner_id();
  } else {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    app->owner_id = std::string("orch-serve:") + host + ":" + redacted_db(config.db);
  }
  std::shared_ptr<WorkerHealthShare> health;
  if (postgres && config.health_check_interval_ms > 0) {
    // One instance probes for all; the others take its results.
    health = std::make_shared<WorkerHealthShare>(app->store, app->owner_id, config.health_check_interval_ms);
    app->worker_health = health;
    registry_options.health_check_gate = [health] { return health->may_probe(); };
  }
  registry_options.on_health_checked = [health, raw = app.get()](const std::vector<WorkerHealth>& results) {
    raw->metrics.worker_health_checks.fetch_add(results.size(), std::memory_order_relaxed);
    for (const WorkerHealth& r : results) {
      if (!r.health.ok()) raw->metrics.worker_health_failures.fetch_add(1, std::memory_order_relaxed);
    }
    if (health) health->publish(results);
  };
  app->registry = std::make_shared<WorkerRegistry>(registry_options);
  ORCH_RETURN_IF_ERROR(register_http_protocols(*app->registry));
  if (state_dir.empty()) {
    AsyncWorkerOptions async;
    // Instances on one PostgreSQL database take runs over from each other:
    // a reply must reach whichever of them owns the run (redis_stream).
    async.shared_runs = postgres;
    ORCH_RETURN_IF_ERROR(register_async_protocols(*app->registry, async));
  } else {
    // mqtt/redis_stream: a stable instance name and a state directory, so
    // replies to calls in flight survive a restart.
    AsyncWorkerOptions async;
    async.instance = async_instance_name(config);
    async.state_dir = (std::filesystem::path(state_dir) / "orch-async").string();
    async.clock = clock;
    async.default_timeout_ms = config.default_timeout_ms;
    async.shared_runs = postgres;
    (void)make_private_dirs(async.state_dir);
    ORCH_RETURN_IF_ERROR(register_async_protocols(*app->registry, async));
  }
  app->workers = std::make_unique<WorkerBook>(app->registry, app->store);
  ORCH_RETURN_IF_ERROR(app->workers->load(config.workers, clock->now_ms()));
  app->dispatcher = dispatcher ? std::move(dispatcher) : app->registry;
  EngineOptions options;
  options.clock = clock;
  options.store = app->store;
  options.dispatcher = app->dispatcher;
  options.default_timeout_ms = config.default_timeout_ms;
  options.max_recoveries = config.max_recoveries;
  // Which run a crash happened in, for recover() (see EngineOptions).
  if (!state_dir.empty()) {
    options.crash_log_path = config.state_dir.empty() && !postgres
                                 ? config.db + ".crashes"
                                 : (std::filesystem::path(state_dir) / "orch.crashes").string();
  }
  options.max_state_bytes = static_cast<size_t>(config.max_state_bytes);
  options.max_descendant_runs = static_cast<size_t>(config.max_descendant_runs);
  options.max_send_items = static_cast<size_t>(config.max_send_items);
  options.max_live_runs = static_cast<size_t>(config.max_live_runs);
  options.max_prompt_bytes = static_cast<size_t>(config.max_prompt_bytes);
  // Pull mode puts the tracker task in the run config: prompts read it as {{task.…}}.
  options.config_template_roots = {"task"};
  options.owner_id = app->owner_id;
  options.lease_ms = config.lease_ttl_ms;
  options.resume_veto = pull_run_resume_veto;
  // The lease keeper (below) takes over runs whose leases run out; on a
  // shared database recover() retrying would have every instance list every
  // running run every lease TTL, for as long as any other instance lives.
  if (postgres) options.recover_retries_leased_runs = false;
  log(LogLevel::kInfo, "engine.owner", {{"owner", app->owner_id}, {"lease_ttl_ms", static_cast<long long>(config.lease_ttl_ms)}});
  options.durability = durability_from_name(config.durability).value_or(Durability::kSync);
  if (config.tracing.enabled) {
    ORCH_ASSIGN_OR_RETURN(auto exporter, OtlpExporter::start(config.tracing, app->metrics.tracing));
    options.tracer = exporter;
    app->tracer = std::move(exporter);
  }
  ORCH_ASSIGN_OR_RETURN(app->engine, Engine::open(std::move(options)));
  App* raw = app.get();
  app->engine_subscription = app->engine->subscribe("", [raw](const EventRecord& e) {
    if (e.kind == event_kind::kRunCompleted) raw->metrics.runs_completed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kRunFailed) raw->metrics.runs_failed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kStepCompleted) raw->metrics.steps_completed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kStepFailed) raw->metrics.steps_failed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kStepRetrying) raw->metrics.steps_retried.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kStepStarted) raw->metrics.steps_claimed.fetch_add(1, std::memory_order_relaxed);
    else if (e.kind == event_kind::kTaskResult) {
      raw->metrics.step_latency.observe(static_cast<double>(e.data["duration_ms"].get_int(0)) / 1000.0);
    }
    log_run_event(e);
    raw->hub.publish(e.run_id);
  });
  // On a shared database another instance may hold the run a control call
  // names; a forwarded call waits for it at most about one lease TTL.
  app->commands = std::make_unique<RunCommandRelay>(app->store, *app->engine, clock, postgres,
                                                    config.lease_ttl_ms + 2000);
  auto watch = app->store->watch_changes([raw, clock](const StoreChange& change) {
    if (change.kind == StoreChange::Kind::kEvents) {
      raw->hub.publish(change.key);
    } else if (change.key == kRunCommandsCollection) {
      raw->commands->on_change();
    } else if (change.key == kWorkersCollection) {
      Status synced = raw->workers->sync_registered(clock->now_ms());
      if (!synced.ok()) log(LogLevel::kWarn, "workers.sync_failed", {{"error", synced.message()}});
    } else if (change.key == kWorkerHealthCollection && raw->worker_health) {
      raw->worker_health->apply_new(*raw->registry);
    }
  });
  if (watch.ok()) {
    app->store_watch = std::move(watch).value();
  } else if (watch.status().code() != StatusCode::kUnimplemented) {
    return Status(watch.status().code(), "following other instances' changes: " + watch.status().message());
  }
  app->callbacks = std::make_unique<CallbackSender>(*app);
  app->callbacks->start();
  if (config.retention_ms > 0) app->retention = std::make_unique<RetentionSweeper>(*app, config.retention_ms);
  Status recovered = app->engine->recover();
  if (!recovered.ok()) return Status(recovered.code(), "resuming runs: " + recovered.message());
  app->leases = std::make_unique<LeaseKeeper>(*app->store, *app->engine, app->owner_id, config.lease_ttl_ms);
  return app;
}

}  // namespace orch::server
