// SPDX-License-Identifier: MIT
//
// ServerConfig: `orch serve` settings from the config file (NullBoiler's
// format) and command-line flags. Unknown keys and unreadable files are
// errors: start-up stops with a message and a non-zero exit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "log/log.h"
#include "orch/host_policy.h"
#include "orch/postgres_store.h"
#include "orch/status.h"
#include "orch/value.h"
#include "telemetry/trace_config.h"

namespace orch::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  // ":memory:" keeps everything in memory; a postgres:// or postgresql://
  // URI (libpq's form, a socket dir as ?host=/run/postgresql) selects the
  // PostgreSQL store; anything else is a SQLite file.
  std::string db = "orch.db";
  // PostgreSQL store settings (config key "postgres": max_connections,
  // acquire_timeout_ms, connect_timeout_s, statement_timeout_ms,
  // lock_timeout_ms, schema); see orch/postgres_store.h.
  // Unlike the library's default, a run's writes are announced only while
  // an event stream (of any instance) follows it: announce_events "followed".
  PostgresStoreOptions postgres = [] {
    PostgresStoreOptions o;
    o.announce_followed_only = true;
    return o;
  }();
  // Where this instance keeps its local files: the crash log (which run was
  // executing when the process died, EngineOptions::crash_log_path) and the
  // mqtt/redis_stream workers' replies in flight. Empty: next to a SQLite
  // database file; with PostgreSQL none (runs are still recovered, but a run
  // that crashes the process is not singled out, and async replies in flight
  // at a restart are lost): set it, one directory per instance.
  std::string state_dir;
  std::string api_token;                 // empty: no auth
  std::string workflows_dir;             // hot-reloaded workflow definitions
  std::string strategies_dir = "strategies";
  Value workers = Value::array();        // seeded workers (raw config entries)
  Value tracker;                         // pull-mode settings (null: disabled)
  // Outbound: hosts workers, their health probes and run callbacks may reach
  // (config key "network"; see orch/host_policy.h).
  HostPolicy network;
  // engine
  int64_t default_timeout_ms = 300000;
  int64_t shutdown_grace_ms = 30000;
  int64_t health_check_interval_ms = 30000;
  int64_t worker_failure_threshold = 3;
  int64_t worker_circuit_breaker_ms = 60000;
  std::string durability = "sync";
  int64_t retention_ms = 0;              // delete finished runs older than this (0: keep)
  // Lease on each run this instance executes (engine.lease_ttl_ms): renewed
  // every third of it; another instance takes the runs over once it runs out.
  int64_t lease_ttl_ms = 30000;
  int64_t max_recoveries = 3;            // EngineOptions::max_recoveries (0: no limit)
  int64_t max_state_bytes = 16 * 1024 * 1024;  // EngineOptions::max_state_bytes
  int64_t max_descendant_runs = 1000;    // EngineOptions::max_descendant_runs
  int64_t max_send_items = 10000;        // EngineOptions::max_send_items
  int64_t max_live_runs = 100000;        // EngineOptions::max_live_runs (429 beyond)
  int64_t max_prompt_bytes = 1024 * 1024;  // EngineOptions::max_prompt_bytes
  // HTTP
  size_t max_body_bytes = 8 * 1024 * 1024;
  // Every SSE stream holds a thread of the pool for its whole life, so
  // streams are capped below the pool: max_sse_clients + kReservedHttpThreads
  // <= http_threads (check_config refuses less).
  size_t http_threads = 64;
  size_t max_sse_clients = 48;
  size_t max_header_count = 100;         // more: 431
  size_t max_connections_per_client = 256;  // per remote address; more: 429 (0: no limit)
  int64_t header_timeout_ms = 10000;     // a request's headers must arrive within it: 408
  int64_t body_timeout_ms = 30000;       // and its body within this, once the headers are in: 408
  size_t max_header_bytes = 64 * 1024;   // names + values; more: 431
  // Origins (scheme://host[:port]) whose cross-site requests are served, with
  // CORS headers; "*" allows any. Others get 403 (CSRF).
  std::vector<std::string> allowed_origins;
  // Host names served without an API token besides localhost, IP addresses
  // and `host` (DNS rebinding).
  std::vector<std::string> allowed_hosts;
  // Binding an address other than loopback without an API token needs this
  // (--allow-unauthenticated-remote); a warning is printed.
  bool allow_unauthenticated_remote = false;
  std::string config_path;               // where it was read from (empty: defaults)
  // Logs (config "log", --log-format, --log-level; see log/log.h).
  LogFormat log_format = LogFormat::kText;
  LogLevel log_level = LogLevel::kInfo;
  // Trace export: the file's "tracing" section as written, and what it and
  // the OTEL_* environment resolve to (telemetry/trace_config.h).
  Value tracing_section;
  TracingConfig tracing;
};

// Threads of the HTTP pool that SSE streams may never take.
constexpr size_t kReservedHttpThreads = 8;

// Settings that contradict each other or are unsafe: InvalidArgument naming
// the first. Called after the file and the flags are read, and by open_app.
Status check_config(const ServerConfig& config);
// All of them, one message each (empty: none).
std::vector<std::string> config_problems(const ServerConfig& config);

// `db` fit for logs and owner ids: a PostgreSQL URI's password (user:PASS@
// or password=PASS) becomes "***".
std::string redacted_db(const std::string& db);

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

// Reads `path` into `config` (fields present override). Unknown keys, wrong
// types and invalid JSON are InvalidArgument naming the key (the first one).
Status load_config_file(const std::string& path, ServerConfig* config);
// The same, noting every problem of the file's keys in `problems` instead of
// stopping at the first. The Status is for a file that cannot be read or is
// not a JSON object (nothing else can then be checked).
Status read_config_file(const std::string& path, ServerConfig* config, std::vector<std::string>* problems);

// Applies `orch serve` flags: --host --port --db --config --token
// --token-file --workflows-dir --allow-unauthenticated-remote --log-format
// --log-level; resolves the tracing config (file + OTEL_* env); without a token
// from the file or the flags, $ORCH_API_TOKEN is used. --config is read first (else $ORCH_HOME/config.json when it
// exists), then the other flags override. InvalidArgument for bad flags.
Status parse_serve_flags(const std::vector<std::string>& args, ServerConfig* config);

}  // namespace orch::server
