// SPDX-License-Identifier: MIT
//
// `orch serve --check-config FILE`: everything `orch serve` would refuse in a
// config file, all at once: unknown keys, wrong types, bad values, workers
// that would be skipped, a tracker or tracing setup that would not start, and
// contradicting settings. Nothing is opened or started.
#include <filesystem>
#include <iostream>
#include <set>

#include "cli/cli.h"
#include "config.h"
#include "orch/url.h"
#include "pull/tracker_config.h"
#include "worker_book.h"

namespace orch::cli {
namespace {

void check_workers(const server::ServerConfig& config, std::vector<std::string>* problems) {
  if (!config.workers.is_array()) return;
  std::set<std::string> ids;
  size_t i = 0;
  for (const Value& entry : config.workers.as_array()) {
    const std::string where = "workers[" + std::to_string(i++) + "]";
    auto worker = server::WorkerBook::parse(entry);
    if (!worker.ok()) {
      problems->push_back(where + ": " + worker.status().message());
      continue;
    }
    if (!ids.insert(worker->id).second) problems->push_back(where + ": worker id '" + worker->id + "' is used twice");
    Result<Url> url = parse_url(worker->url);
    if (url.ok()) {
      Status allowed = check_host(config.network, url->host);
      if (!allowed.ok()) problems->push_back(where + " (" + worker->id + "): " + allowed.message());
    }
  }
}

void check_tracker(const server::ServerConfig& config, std::vector<std::string>* problems) {
  if (!config.tracker.is_object()) return;
  const std::string base = std::filesystem::path(config.config_path).parent_path().string();
  auto tracker = server::parse_tracker_config(config.tracker, base);
  if (!tracker.ok()) {
    problems->push_back("tracker: " + tracker.status().message());
    return;
  }
  auto pipelines = server::load_pipeline_defs(*tracker);
  if (!pipelines.ok()) problems->push_back("tracker: " + pipelines.status().message());
}

}  // namespace

int check_config_command(const std::string& path) {
  server::ServerConfig config;
  std::vector<std::string> problems;
  Status read = server::read_config_file(path, &config, &problems);
  if (read.code() == StatusCode::kNotFound) {
    std::cerr << "orch serve --check-config: " << read.message() << "\n";
    return kExitUsage;
  }
  if (!read.ok()) problems.push_back(read.message());
  if (read.ok()) {
    check_workers(config, &problems);
    check_tracker(config, &problems);
    server::resolve_tracing_config(config.tracing_section, server::process_env(), &problems);
    if (!config.workflows_dir.empty() && !std::filesystem::is_directory(config.workflows_dir)) {
      problems.push_back("workflows_dir: " + config.workflows_dir + " is not a directory");
    }
    for (std::string& p : server::config_problems(config)) problems.push_back(std::move(p));
  }
  if (problems.empty()) {
    std::cout << path << ": OK\n";
    return kExitOk;
  }
  for (const std::string& p : problems) std::cout << path << ": " << p << "\n";
  std::cout << path << ": " << problems.size() << (problems.size() == 1 ? " problem" : " problems") << "\n";
  return kExitFailure;
}

}  // namespace orch::cli
