// SPDX-License-Identifier: MIT
// `orch run FILE --input JSON`: one workflow, run locally to its end.
#include <iostream>

#include "app.h"
#include "cli.h"
#include "orch/workflow.h"

namespace orch::cli {

int run_command(const Args& args) {
  std::string file;
  std::string input_text = "{}";
  server::ServerConfig config;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--input" || args[i] == "--db") && i + 1 < args.size()) {
      (args[i] == "--input" ? input_text : config.db) = args[i + 1];
      ++i;
    } else if (file.empty() && args[i].rfind("--", 0) != 0) {
      file = args[i];
    } else {
      std::cerr << "orch run: unexpected argument " << args[i] << "\nusage: orch run FILE [--input JSON] [--db PATH]\n";
      return kExitUsage;
    }
  }
  if (file.empty()) {
    std::cerr << "usage: orch run FILE [--input JSON] [--db PATH]\n";
    return kExitUsage;
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
    if (e.kind == "task_result") {
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
