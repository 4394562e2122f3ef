// SPDX-License-Identifier: MIT
//
// The one numbering of a workflow's vertices, shared by validation
// (workflow_graph.cc) and the engine's compiled graph (engine/graph.h):
// 0 = __start__, 1 = __end__, then node i of Workflow::nodes as i + 2.
// Pure functions; thread-safe.
#pragma once

#include <string_view>

#include "orch/workflow.h"

namespace orch::workflow_internal {

constexpr int kStartVertex = 0;
constexpr int kEndVertex = 1;
constexpr int kFirstNodeVertex = 2;

// Vertices of a workflow with `node_count` nodes.
inline int vertex_count(size_t node_count) { return static_cast<int>(node_count) + kFirstNodeVertex; }
inline int node_vertex(int node_index) { return node_index < 0 ? -1 : node_index + kFirstNodeVertex; }
// The node index of a node vertex (-1 for __start__ and __end__).
inline int vertex_node(int vertex) { return vertex < kFirstNodeVertex ? -1 : vertex - kFirstNodeVertex; }

// The vertex named `name`, or -1. The synthetic names win over nodes wrongly
// defined under them (validation reports those).
inline int vertex_of(const Workflow& wf, std::string_view name) {
  if (name == kStartNode) return kStartVertex;
  if (name == kEndNode) return kEndVertex;
  return node_vertex(wf.node_index(name));
}

}  // namespace orch::workflow_internal
