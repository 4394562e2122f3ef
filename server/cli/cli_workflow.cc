// SPDX-License-Identifier: MIT
//
// `orch validate`, `orch mermaid` and `orch svg`: workflow files checked and
// drawn without a server.
#include <iostream>

#include "cli/cli.h"
#include "orch/workflow.h"
#if ORCH_HAS_GRAPHVIZ
#include "orch/graphviz.h"
#endif

namespace orch::cli {
namespace {

// Reads the single FILE argument of `command`; nullopt after printing why.
std::optional<std::string> read_single_file(const Args& args, const char* command) {
  if (args.size() != 1 || args[0].empty() || (args[0][0] == '-' && args[0] != "-")) {
    std::cerr << "usage: orch " << command << " FILE\n";
    return std::nullopt;
  }
  std::string error;
  auto text = read_file(args[0], &error);
  if (!text) std::cerr << "orch: cannot read " << args[0] << ": " << error << "\n";
  return text;
}

}  // namespace

int validate_command(const Args& args) {
  auto text = read_single_file(args, "validate");
  if (!text) return kExitUsage;
  std::vector<ValidationIssue> issues = validate_workflow_json(*text);
  size_t errors = 0;
  size_t warnings = 0;
  for (const auto& issue : issues) {
    // Issues go to stdout in the validator's order: they are the result.
    std::cout << (issue.warning ? "warning: " : "") << to_string(issue) << "\n";
    ++(issue.warning ? warnings : errors);
  }
  std::cout.flush();
  std::cerr << args[0] << ": " << (errors == 0 ? "valid" : "invalid") << " (" << errors
            << (errors == 1 ? " error, " : " errors, ") << warnings
            << (warnings == 1 ? " warning)" : " warnings)") << "\n";
  return errors == 0 ? kExitOk : kExitFailure;
}

int mermaid_command(const Args& args) {
  auto text = read_single_file(args, "mermaid");
  if (!text) return kExitUsage;
  auto workflow = parse_workflow_json(*text);
  if (!workflow.ok()) {
    std::cerr << "orch: " << args[0] << ": " << workflow.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << workflow_to_mermaid((*workflow)->definition);
  return kExitOk;
}

int svg_command(const Args& args) {
  auto text = read_single_file(args, "svg");
  if (!text) return kExitUsage;
  auto workflow = parse_workflow_json(*text);
  if (!workflow.ok()) {
    std::cerr << "orch: " << args[0] << ": " << workflow.status().message() << "\n";
    return kExitFailure;
  }
#if ORCH_HAS_GRAPHVIZ
  auto svg = workflow_svg(**workflow);
  if (!svg.ok()) {
    std::cerr << "orch: " << args[0] << ": " << svg.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << *svg;
  return kExitOk;
#else
  std::cerr << "orch: this orch was built without Graphviz (ORCH_WITH_GRAPHVIZ=OFF); "
               "`orch mermaid FILE` draws the workflow as Mermaid text\n";
  return kExitFailure;
#endif
}

}  // namespace orch::cli
