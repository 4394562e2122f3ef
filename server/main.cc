// SPDX-License-Identifier: MIT
//
// The `orch` program: `orch COMMAND ARGS...`. main() only dispatches to the
// commands of kCommands, each implemented in a cli_<area>.cc file.
#include <iostream>
#include <string_view>

#include "cli/cli.h"
#include "orch/version.h"

namespace {

struct Command {
  const char* name;
  const char* usage;
  int (*run)(const orch::cli::Args& args);
};

constexpr Command kCommands[] = {
    {"serve", "serve [--port P] [--host H] [--db PATH|postgresql://...] [--config FILE] [--token T]\n"
              "                  [--workflows-dir DIR] [--state-dir DIR]\n"
              "                  [--log-format text|json] [--log-level debug|info|warn|error]\n"
              "                  run the HTTP API server (embedded SQLite, or PostgreSQL for a postgres:// URI)\n"
              "  serve --check-config FILE\n"
              "                  list every problem of a config file (exit 1 when there is one)",
     orch::cli::serve_command},
    {"run", "run FILE [--input JSON] [--db PATH]   run a workflow locally and print its final state",
     orch::cli::run_command},
    {"validate", "validate FILE   check a workflow definition (exit 1 when it has errors)",
     orch::cli::validate_command},
    {"mermaid", "mermaid FILE    print a workflow definition as a Mermaid flowchart",
     orch::cli::mermaid_command},
    {"svg", "svg FILE        print a workflow definition as an SVG picture (Graphviz)",
     orch::cli::svg_command},
    {"export", "export --db PATH|postgresql://... [--out FILE] [--include-active]\n"
               "                  write the workflows, workers and finished or paused runs as JSON Lines",
     orch::cli::export_command},
    {"import", "import --db PATH|postgresql://... [FILE|-]\n"
               "                  read an export into this store (what it already has is skipped)",
     orch::cli::import_command},
};

void print_usage(std::ostream& out) {
  out << "usage: orch COMMAND [ARGS]\n\ncommands:\n";
  for (const Command& c : kCommands) out << "  " << c.usage << "\n";
  out << "\n  --version       print the version\n  --help          print this help\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return orch::cli::kExitUsage;
  }
  std::string_view command = argv[1];
  if (command == "--version" || command == "version") {
    // NullBoiler prints "nullboiler v<version>"; installers parse that shape.
    std::cout << "orch v" << orch::version() << "\n";
    return orch::cli::kExitOk;
  }
  if (command == "--export-manifest") return orch::cli::export_manifest_command({});
  if (command == "--from-json") return orch::cli::from_json_command(orch::cli::Args(argv + 2, argv + argc));
  if (command == "--help" || command == "-h" || command == "help") {
    print_usage(std::cout);
    return orch::cli::kExitOk;
  }
  for (const Command& c : kCommands) {
    if (command == c.name) return c.run(orch::cli::Args(argv + 2, argv + argc));
  }
  std::cerr << "orch: unknown command '" << command << "'\n";
  print_usage(std::cerr);
  return orch::cli::kExitUsage;
}
