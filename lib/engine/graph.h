// SPDX-License-Identifier: MIT
//
// CompiledGraph: the scheduling view of a Workflow, computed once per workflow.
// Vertices are numbered as validation numbers them (workflow/workflow_vertices.h):
// 0 = __start__, 1 = __end__, then the nodes in definition order.
// Each edge knows whether it is a back edge (its target dominates its source:
// it closes a loop), which is what lets loops re-trigger their head.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "orch/value.h"
#include "orch/workflow.h"
#include "workflow/workflow_vertices.h"

namespace orch::internal {

using workflow_internal::kEndVertex;
using workflow_internal::kStartVertex;

struct GraphEdge {
  int source;
  int target;
  std::optional<std::string> condition;
  bool back = false;
};

// Dominance over vertices 0..n-1 of an edge list, from kStartVertex: `a`
// dominates `b` when every path from __start__ to `b` passes through `a`.
// Immediate dominators by Lengauer and Tarjan (O(m log n)); queries in O(1)
// from the entry and exit times of a walk of the dominator tree. A vertex that __start__ cannot reach is dominated only by
// itself, and dominates only itself.
class DominatorTree {
 public:
  DominatorTree(size_t vertex_count, const std::vector<GraphEdge>& edges);

  bool dominates(int a, int b) const;
  // The immediate dominator of `v`; __start__'s is itself, and -1 for a
  // vertex __start__ cannot reach.
  int idom(int v) const { return idom_[static_cast<size_t>(v)]; }

 private:
  std::vector<int> idom_;
  // Entry and exit times of each vertex in a walk of the dominator tree; -1
  // for unreachable vertices.
  std::vector<int> enter_;
  std::vector<int> leave_;
};

class CompiledGraph {
 public:
  static std::shared_ptr<const CompiledGraph> compile(std::shared_ptr<const Workflow> workflow);

  const Workflow& workflow() const { return *workflow_; }
  std::shared_ptr<const Workflow> workflow_ptr() const { return workflow_; }
  size_t vertex_count() const { return names_.size(); }
  const std::string& name(int v) const { return names_[static_cast<size_t>(v)]; }
  // The name, and the node's type name, as shared JSON strings: events carry
  // them every superstep, and a shared Value costs no allocation.
  const Value& name_value(int v) const { return name_values_[static_cast<size_t>(v)]; }
  const Value& type_value(int v) const { return type_values_[static_cast<size_t>(v)]; }
  // [name of v], built once: checkpoints list one-node sets at every step.
  const Value& name_list_value(int v) const { return name_lists_[static_cast<size_t>(v)]; }
  // -1 when unknown.
  int vertex(const std::string& name) const;
  // nullptr for __start__/__end__.
  const Node* node(int v) const {
    int i = workflow_internal::vertex_node(v);
    return i < 0 ? nullptr : &workflow_->nodes[static_cast<size_t>(i)];
  }
  const std::vector<GraphEdge>& edges() const { return edges_; }
  const std::vector<int>& in_edges(int v) const { return in_[static_cast<size_t>(v)]; }
  const std::vector<int>& out_edges(int v) const { return out_[static_cast<size_t>(v)]; }

 private:
  std::shared_ptr<const Workflow> workflow_;
  std::vector<std::string> names_;
  std::vector<Value> name_values_;
  std::vector<Value> type_values_;  // null for __start__/__end__
  std::vector<Value> name_lists_;
  std::vector<GraphEdge> edges_;
  std::vector<std::vector<int>> in_;
  std::vector<std::vector<int>> out_;
};

}  // namespace orch::internal
