// SPDX-License-Identifier: MIT
//
// The subcommands of the `orch` program and what they share. Each command
// takes the arguments after its name and returns the process exit code.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace orch::cli {

using Args = std::vector<std::string>;

// Exit codes of every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and found a problem
inline constexpr int kExitUsage = 2;    // bad arguments or an unreadable file

// `orch validate FILE`: lists the issues of a workflow definition, errors as
// "type node key: message", warnings with a "warning: " prefix. Exit 0 when
// valid (warnings allowed), 1 with errors, 2 when FILE cannot be read.
int validate_command(const Args& args);

// `orch mermaid FILE`: prints the Mermaid flowchart of a workflow definition.
// Exit 1 when FILE is not a workflow, 2 when it cannot be read.
int mermaid_command(const Args& args);

// `orch svg FILE`: prints the workflow as an SVG picture laid out by Graphviz
// (see orch/graphviz.h). Exit 1 when FILE is not a workflow, is too large to
// draw, or orch was built without Graphviz; 2 when it cannot be read.
int svg_command(const Args& args);

// `orch serve [--host H] [--port P] [--db PATH] [--config FILE] [--token T]
// [--workflows-dir DIR] [--log-format text|json] [--log-level L]`: the HTTP
// API. Exit 0 after a graceful stop.
int serve_command(const Args& args);

// `orch serve --check-config FILE`: prints every problem of a config file
// (with the OTEL_* environment), one a line. Exit 0 when there is none, 1
// when there are, 2 when FILE cannot be read.
int check_config_command(const std::string& path);

// `orch run FILE [--input JSON] [--db PATH]`: runs a workflow locally, prints
// progress as nodes finish and the final state; exit 0 when it completed.
int run_command(const Args& args);

// `orch export --db DB [--out FILE] [--include-active]`: writes the store's
// workflows, workers and runs at rest as JSON Lines (standard output without
// --out); see transfer/store_transfer.h. `orch import --db DB [FILE|-]`:
// reads such a file into another store, skipping what it already has. Both
// print their counts on stderr; exit 1 when the store fails or the file is
// bad (the error names its line), 2 for bad arguments.
int export_command(const Args& args);
int import_command(const Args& args);

// NullBoiler installer modes: `orch --export-manifest` and
// `orch --from-json '<object>'` (writes $ORCH_HOME/config.json).
int export_manifest_command(const Args& args);
int from_json_command(const Args& args);

// The whole contents of `path` ("-" reads standard input), or nullopt with a
// reason in `*error`.
std::optional<std::string> read_file(const std::string& path, std::string* error);

}  // namespace orch::cli
