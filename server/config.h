// SPDX-License-Identifier: MIT
//
// ServerConfig: `orch serve` settings from the config file (NullBoiler's
// format) and command-line flags. Unknown keys and unreadable files are
// errors: start-up stops with a message and a non-zero exit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "orch/host_policy.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string db = "orch.db";            // ":memory:" keeps everything in memory
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
  // HTTP
  size_t max_body_bytes = 8 * 1024 * 1024;
  size_t http_threads = 16;
  size_t max_sse_clients = 200;
  std::string config_path;               // where it was read from (empty: defaults)
};

// Reads `path` into `config` (fields present override). Unknown keys, wrong
// types and invalid JSON are InvalidArgument naming the key.
Status load_config_file(const std::string& path, ServerConfig* config);

// Applies `orch serve` flags: --host --port --db --config --token
// --workflows-dir. --config is read first (else $ORCH_HOME/config.json when it
// exists), then the other flags override. InvalidArgument for bad flags.
Status parse_serve_flags(const std::vector<std::string>& args, ServerConfig* config);

}  // namespace orch::server
