// SPDX-License-Identifier: MIT
// `orch run FILE [--input JSON] [--db PATH] [--config FILE] [--worker SPEC]...`:
// one workflow, run locally to its end, with the config file's workers and
// any given on the command line.
#include <iostream>

#include "app.h"
#include "cli/cli.h"
#include "orch/event_kinds.h"
#include "orch/workflow.h"

namespace orch::cli {
namespace {

constexpr const char* kUsage =
    "usage: orch run FILE [--input JSON] [--db PATH] [--config FILE] "
    "[--worker URL[,tags=a|b][,protocol=P][,token=T][,model=M]]...\n";

// "URL[,key=value]...": a worker entry as the config file's `workers` holds it.
Result<Value> worker_from_flag(const std::string& spec, size_t n) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= spec.size(); ++i) {
    if (i == spec.size() || spec[i] == ',') {
      parts.push_back(spec.substr(start, i - start));
      start = i + 1;
    }
  }
  if (parts.empty() || parts[0].empty()) return Status::invalid_argument("--worker needs a URL");
  Value w = Value::object({{"id", "cli-worker-" + std::to_string(n)}, {"url", parts[0]}, {"max_concurrent", 8}});
  for (size_t i = 1; i < parts.size(); ++i) {
    size_t eq = parts[i].find('=');
    if (eq == std::string::npos) return Status::invalid_argument("--worker: '" + parts[i] + "' is not key=value");
    std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
    if (key == "tags") {
      Value tags = Value::array();
      size_t from = 0;
      for (size_t j = 0; j <= value.size(); ++j) {
        if (j == value.size() || value[j] == '|') {
          if (j > from) tags.push_back(value.substr(from, j - from));
          from = j + 1;
        }
      }
      w.set("tags", std::move(tags));
    } else if (key == "protocol" || key == "token" || key == "model" || key == "id") {
      w.set(key, value);
    } else {
      return Status::invalid_argument("--worker: unknown key '" + key + "' (tags, protocol, token, model, id)");
    }
  }
  return w;
}

}  // namespace

int run_command(const Args& args) {
  std::string file;
  std::string input_text = "{}";
  server::ServerConfig config;
  std::string config_file, db;
  std::vector<std::string> worker_flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--input" || a == "--db" || a == "--config" || a == "--worker") && i + 1 < args.size()) {
      const std::string& v = args[++i];
      if (a == "--input") input_text = v;
      else if (a == "--db") db = v;
      else if (a == "--config") config_file = v;
      else worker_flags.push_back(v);
    } else if (file.empty() && a.rfind("--", 0) != 0) {
      file = a;
    } else {
      std::cerr << "orch run: unexpected argument " << a << "\n" << kUsage;
      return kExitUsage;
    }
  }
  if (file.empty()) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  if (!config_file.empty()) {
    Status s = server::load_config_file(config_file, &config);
    if (!s.ok()) {
      std::cerr << "orch run: " << s.message() << "\n";
      return kExitUsage;
    }
  }
  if (!db.empty()) config.db = db;
  for (size_t n = 0; n < worker_flags.size(); ++n) {
    auto w = worker_from_flag(worker_flags[n], n + 1);
    if (!w.ok()) {
      std::cerr << "orch run: " << w.status().message() << "\n" << kUsage;
      return kExitUsage;
    }
    config.workers.push_back(*w);
  }
  std::string error;
  auto text = read_file(file, &error);
  if (!text) {
    std::cerr << "orch run: " << error << "\n";
    return kExitUsage;
  }
  auto definition = parse_json(*text);
  if (!definition.ok()) {
    std::cerr << "orch run: " << file << ": " << definition.status().message() << "\n";
    return kExitFailure;
  }
  auto issues = validate_workflow(*definition);
  if (!workflow_is_valid(issues)) {
    for (const auto& i : issues) {
      if (!i.warning) std::cerr << to_string(i) << "\n";
    }
    return kExitFailure;
  }
  auto input = parse_json(input_text);
  if (!input.ok()) {
    std::cerr << "orch run: --input: " << input.status().message() << "\n";
    return kExitUsage;
  }
  auto workflow = parse_workflow(*definition);
  if (!workflow.ok()) {
    std::cerr << "orch run: " << workflow.status().message() << "\n";
    return kExitFailure;
  }
  auto app = server::open_app(config, nullptr);
  if (!app.ok()) {
    std::cerr << "orch run: " << app.status().message() << "\n";
    return kExitFailure;
  }
  Engine& engine = *(*app)->engine;
  // Progress: one line per finished node, on stderr.
  engine.subscribe("", [](const EventRecord& e) {
    if (e.kind == event_kind::kTaskResult) {
      std::cerr << "  " << (e.data["ok"].get_bool(false) ? "done  " : "failed") << " " << e.data["name"].get_string("")
                << " (" << e.data["duration_ms"].get_int(0) << " ms)\n";
    }
  });
  RunOptions options;
  options.input = *input;
  auto id = engine.start_run(*workflow, options);
  if (!id.ok()) {
    std::cerr << "orch run: " << id.status().message() << "\n";
    return kExitFailure;
  }
  std::cerr << "run " << *id << "\n";
  auto done = engine.wait(*id, std::chrono::hours(24 * 365));
  if (!done.ok()) {
    std::cerr << "orch run: " << done.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << done->state.to_json() << "\n";
  std::cerr << "status: " << run_status_name(done->status) << (done->error.empty() ? "" : ": " + done->error) << "\n";
  return done->status == RunStatus::kCompleted ? kExitOk : kExitFailure;
}

}  // namespace orch::cli
