// SPDX-License-Identifier: MIT
//
// `orch serve`: the HTTP server with embedded SQLite. Example workflows from
// --workflows-dir are loaded at start; SIGTERM/SIGINT stop accepting, let
// running runs reach a checkpoint (or finish) within the grace period, then exit.
#include <malloc.h>

#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <iostream>

#include "app.h"
#include "cli/cli.h"
#include "http/http_api.h"
#include "http/http_listener.h"
#include "orch/version.h"
#include "pull/tracker.h"
#include "workflow_dir.h"

namespace orch::cli {
namespace {

server::HttpListener* g_listener = nullptr;
std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop = true;
  if (g_listener) g_listener->stop();  // makes run() return
}

}  // namespace

int serve_command(const Args& args) {
  // glibc's fast bins: every allocation of 1 KiB or more (an HTTP request's
  // socket buffer, on both sides of every worker call) first merges them
  // all back, ~2% of the server's CPU under load; its per-thread caches
  // serve the small allocations anyway. Set before any thread starts.
  mallopt(M_MXFAST, 0);
  server::ServerConfig config;
  Status s = server::parse_serve_flags(args, &config);
  if (!s.ok()) {
    std::cerr << "orch serve: " << s.message() << "\n";
    return kExitUsage;
  }
  auto app = server::open_app(config, nullptr);
  if (!app.ok()) {
    std::cerr << "orch serve: " << app.status().message() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<server::WorkflowDirWatcher> watcher;
  if (!config.workflows_dir.empty()) {
    watcher = std::make_unique<server::WorkflowDirWatcher>(**app, config.workflows_dir);
    Status w = watcher->start();
    if (!w.ok()) {
      std::cerr << "orch serve: " << w.message() << "\n";
      return kExitFailure;
    }
  }
  httplib::Server svr;
  server::install_api(**app, svr);
  server::HttpListener listener(svr, server::listener_limits(config));
  g_listener = &listener;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  if (config.api_token.empty() && !server::is_loopback_host(config.host)) {
    std::cerr << "orch serve: WARNING: listening on " << config.host
              << " without an API token: anyone who can reach this address can start runs and register "
                 "workers; put a reverse proxy with authentication in front, or set --token\n";
  }
  std::cerr << "orch v" << orch::version() << " listening on http://" << config.host << ":" << config.port
            << " (db " << orch::server::redacted_db(config.db) << ", auth " << (config.api_token.empty() ? "off" : "bearer token") << ")\n";
  if (Status b = listener.bind(config.host, config.port); !b.ok()) {
    std::cerr << "orch serve: " << b.message() << "\n";
    return kExitFailure;
  }
  // Pull mode (config `tracker`) starts once the API's port is bound.
  if (Status t = server::start_tracker(**app); !t.ok()) {
    std::cerr << "orch serve: " << t.message() << "\n";
    return kExitFailure;
  }
  listener.run();
  // Graceful shutdown: no new requests; give running runs the grace period.
  (*app)->stopping = true;
  server::stop_tracker(**app);  // kills agents, cancels its runs, releases leases
  (*app)->hub.close();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.shutdown_grace_ms);
  RunFilter running;
  running.status = RunStatus::kRunning;
  running.limit = SIZE_MAX;
  if (auto runs = (*app)->store->list_runs(running); runs.ok()) {
    for (const RunRecord& r : *runs) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      (void)(*app)->engine->wait(r.id, left);
    }
  }
  if (watcher) watcher->stop();
  std::cerr << "orch serve: stopped (" << (*app)->engine->active_runs() << " runs left running; they resume on restart)\n";
  return kExitOk;
}

}  // namespace orch::cli
