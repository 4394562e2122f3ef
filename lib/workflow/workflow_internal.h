// SPDX-License-Identifier: MIT
//
// Pieces shared by the workflow parser, validator, serializer and Mermaid
// writer. Not installed; tests include it to check the helpers directly.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orch/value.h"
#include "orch/workflow.h"

namespace orch::workflow_internal {

// NullBoiler's node-field accessor: a string reads as its characters, any other
// JSON type as its compact JSON text (so `"output_key": 5` means "5"). Absent
// and null read as nullopt: NullBoiler would read null as the text "null",
// which no user means.
std::optional<std::string> field_text(const Value& object, std::string_view key);

// Splits an edge source "node:value" at the first ':' (the value may itself
// contain ':'). Returns the node; `condition` receives the value, if any.
std::string_view split_edge_source(std::string_view source, std::optional<std::string>* condition);

// Reads `definition` into `out`. Problems met on the way (invalid_field,
// malformed edges) are appended to `issues` when it is not null. Returns the
// fatal issue (parse_error / missing_field) when the definition cannot be a
// workflow at all; `out` is then unspecified.
// A definition beyond `limits` gives too_many_nodes / too_many_edges as its
// fatal issue, found before any node is read.
std::optional<ValidationIssue> read_definition(const Value& definition, Workflow* out,
                                               std::vector<ValidationIssue>* issues,
                                               const WorkflowLimits& limits);

// too_many_nodes when `nodes` is beyond the cap, else too_many_edges when
// `edges` (route targets included) is; nullopt when both fit.
std::optional<ValidationIssue> check_size(size_t nodes, size_t edges,
                                          const WorkflowLimits& limits);

// One string per conditional edge source -value-> target, to find route
// edges in a set: scanning every edge for every route would be quadratic.
std::string conditional_edge_id(std::string_view source, std::string_view value,
                                std::string_view target);

// Appends the checks of validate_workflow() steps 3-11 on a typed workflow.
void check_workflow(const Workflow& workflow, std::vector<ValidationIssue>* issues);

// The top-level state keys that `{{state.X...}}` and `{% if state.X %}` tags
// of `text` reference, first occurrence first, without repeats.
std::vector<std::string> referenced_state_keys(std::string_view text);

// Facts about the edge graph used by validation.
struct GraphFacts {
  std::vector<bool> reachable;    // per node (index in Workflow::nodes): from __start__
  std::vector<bool> reaches_end;  // per node: __end__ is reachable from it
  bool end_reachable = false;     // __end__ is reachable from __start__
  // Strongly connected sets of nodes that contain a cycle and that no edge
  // leaves; each is sorted by node index, the list by first index.
  std::vector<std::vector<int>> closed_cycles;
};

// Edges whose ends are not nodes (or that enter __start__ / leave __end__) are
// ignored: validation reports them on their own.
GraphFacts analyze_graph(const Workflow& workflow);

}  // namespace orch::workflow_internal
