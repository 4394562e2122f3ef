// SPDX-License-Identifier: MIT
//
// App: what the HTTP API works on — the store, the engine, the drain flag and
// the metrics. Built by `orch serve` (and by tests) and shared by the handlers.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "config.h"
#include "event_hub.h"
#include "rate_limit_share.h"
#include "http/request_log.h"
#include "metrics.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "orch/worker_registry.h"
#include "workflow_cache.h"

namespace orch::server {

class CallbackSender;
class LeaseKeeper;
class OtlpExporter;
class RetentionSweeper;
class RunCommandRelay;
class Tracker;
class WorkerBook;
class WorkerHealthShare;

struct App {
  App();
  ~App();  // stops the tracker and the callback sender before the engine
  ServerConfig config;
  std::shared_ptr<Store> store;
  std::shared_ptr<Dispatcher> dispatcher;   // the registry unless a test supplies its own
  // Workers' rate-limit reports shared with other instances (PostgreSQL
  // only; null otherwise). Held by the registry's callback too.
  std::shared_ptr<RateLimitShare> rate_limit_share;
  // Worker health probes once across the instances sharing a database, their
  // results shared (PostgreSQL with health checks on; null otherwise). Held
  // by the registry's callbacks too.
  std::shared_ptr<WorkerHealthShare> worker_health;
  std::shared_ptr<WorkerRegistry> registry;  // the workers the engine dispatches to
  std::unique_ptr<WorkerBook> workers;       // /workers: config and registered workers
  std::shared_ptr<OtlpExporter> tracer;     // config.tracing (null when off); shared with the engine
  std::unique_ptr<Engine> engine;
  std::atomic<bool> draining{false};
  Metrics metrics;
  std::atomic<size_t> sse_clients{0};
  std::atomic<bool> stopping{false};
  EventHub hub;
  // Control calls on runs (cancel, resume, ...): applied here, or handed to
  // the instance sharing the store that holds the run. Declared after the
  // engine and before store_watch (whose callback wakes it).
  std::unique_ptr<RunCommandRelay> commands;
  // What other instances sharing the store (PostgreSQL) change: their
  // events wake this one's SSE streams, their worker registrations reach
  // this one's worker book. Null when the store has no such feed. Declared
  // after hub and workers: destroyed (its thread stopped) first.
  std::unique_ptr<StoreWatch> store_watch;
  std::mutex store_watch_mu;  // guards store_watch once the App serves
  // An event stream follows its run while it is open, so that the instance
  // executing the run announces its events (StoreWatch::follow). Thread-safe.
  void follow_run(const std::string& run_id);
  void unfollow_run(const std::string& run_id);
  uint64_t engine_subscription = 0;
  std::unique_ptr<CallbackSender> callbacks;  // declared after engine: destroyed first
  std::unique_ptr<Tracker> tracker;           // pull mode (null when off); stopped first
  std::unique_ptr<RetentionSweeper> retention;  // null when engine.retention_ms is 0
  // This process's lease owner id (orch-serve:<host>:<pid>:<random>), and
  // what renews its leases and takes over expired ones; stopped first.
  std::string owner_id;
  std::unique_ptr<LeaseKeeper> leases;
  WorkflowCache workflows;  // stored workflows as runs start from them
  // Called with every response once it is written (tests record them; see
  // http/request_log.h). Set before the server starts.
  ResponseRecorder response_recorder;
};

// The name mqtt/redis_stream workers know this instance by (its broker
// client id and reply channel): stable across restarts of one instance,
// different for instances sharing a database (each has its own state_dir).
std::string async_instance_name(const ServerConfig& config);

// Opens the store named by config.db alone: ":memory:", a postgres:// or
// postgresql:// URI (with config.postgres), or a SQLite file path (its
// folder is created).
Result<std::shared_ptr<Store>> open_store(const ServerConfig& config);

// Opens the store named by config.db (":memory:" or a SQLite file), the worker
// registry (seeded from config and the store), the engine, and resumes runs
// left running. `dispatcher`, when given, replaces the registry as the
// engine's dispatcher (tests).
Result<std::unique_ptr<App>> open_app(const ServerConfig& config, std::shared_ptr<Dispatcher> dispatcher);

}  // namespace orch::server
