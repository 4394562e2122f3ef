// SPDX-License-Identifier: MIT
#include "graph.h"

#include <algorithm>

namespace orch::internal {
namespace {

// A fixed-size bitset over vertices, one 64-bit word at a time.
class Bits {
 public:
  Bits(size_t n, bool value) : words_((n + 63) / 64, value ? ~uint64_t{0} : 0) {}
  void set(size_t i) { words_[i / 64] |= uint64_t{1} << (i % 64); }
  bool test(size_t i) const { return (words_[i / 64] >> (i % 64)) & 1; }
  void assign_and(const Bits& other) {
    for (size_t w = 0; w < words_.size(); ++w) words_[w] &= other.words_[w];
  }
  void clear() { std::fill(words_.begin(), words_.end(), 0); }
  bool operator!=(const Bits& other) const { return words_ != other.words_; }

 private:
  std::vector<uint64_t> words_;
};

// Dominator sets by the classic iterative data-flow algorithm:
// dom(start) = {start}; dom(v) = {v} ∪ ⋂ dom(p) over predecessors p. Word-wide
// bitsets keep this fast for graphs of thousands of nodes; it runs once per
// workflow.
std::vector<Bits> dominators(size_t n, const std::vector<GraphEdge>& edges,
                             const std::vector<std::vector<int>>& in) {
  // Vertices __start__ cannot reach are dominated by nothing but themselves,
  // so no edge touching them counts as a back edge.
  std::vector<bool> reachable(n, false);
  std::vector<size_t> stack{static_cast<size_t>(kStartVertex)};
  reachable[kStartVertex] = true;
  std::vector<std::vector<int>> out(n);
  for (size_t e = 0; e < edges.size(); ++e) out[static_cast<size_t>(edges[e].source)].push_back(static_cast<int>(e));
  while (!stack.empty()) {
    size_t v = stack.back();
    stack.pop_back();
    for (int e : out[v]) {
      size_t t = static_cast<size_t>(edges[static_cast<size_t>(e)].target);
      if (!reachable[t]) {
        reachable[t] = true;
        stack.push_back(t);
      }
    }
  }
  std::vector<Bits> dom(n, Bits(n, true));
  for (size_t v = 0; v < n; ++v) {
    if (v == static_cast<size_t>(kStartVertex) || !reachable[v]) {
      dom[v].clear();
      dom[v].set(v);
    }
  }
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t v = 1; v < n; ++v) {
      if (!reachable[v]) continue;
      Bits next(n, true);
      for (int e : in[v]) {
        size_t source = static_cast<size_t>(edges[static_cast<size_t>(e)].source);
        if (reachable[source]) next.assign_and(dom[source]);
      }
      next.set(v);
      if (next != dom[v]) {
        dom[v] = std::move(next);
        changed = true;
      }
    }
  }
  return dom;
}

}  // namespace

std::shared_ptr<const CompiledGraph> CompiledGraph::compile(std::shared_ptr<const Workflow> workflow) {
  auto g = std::make_shared<CompiledGraph>();
  g->workflow_ = std::move(workflow);
  const Workflow& wf = *g->workflow_;
  g->names_ = {std::string(kStartNode), std::string(kEndNode)};
  for (const Node& n : wf.nodes) g->names_.push_back(n.name);
  for (size_t i = 0; i < g->names_.size(); ++i) g->index_.emplace(g->names_[i], static_cast<int>(i));
  for (size_t i = 0; i < g->names_.size(); ++i) {
    g->name_values_.emplace_back(g->names_[i]);
    g->name_lists_.push_back(Value::array({g->name_values_.back()}));
    g->type_values_.push_back(i < 2 ? Value() : Value(std::string(node_type_name(wf.nodes[i - 2].type))));
  }
  const size_t n = g->names_.size();
  g->in_.resize(n);
  g->out_.resize(n);
  for (const Edge& e : wf.edges) {
    int s = g->vertex(e.source);
    int t = g->vertex(e.target);
    if (s < 0 || t < 0) continue;  // validation reports these
    g->edges_.push_back(GraphEdge{s, t, e.condition, false});
    int id = static_cast<int>(g->edges_.size() - 1);
    g->out_[static_cast<size_t>(s)].push_back(id);
    g->in_[static_cast<size_t>(t)].push_back(id);
  }
  auto dom = dominators(n, g->edges_, g->in_);
  for (GraphEdge& e : g->edges_) {
    e.back = dom[static_cast<size_t>(e.source)].test(static_cast<size_t>(e.target));
  }
  return g;
}

int CompiledGraph::vertex(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

}  // namespace orch::internal
