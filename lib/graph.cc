// SPDX-License-Identifier: MIT
#include "graph.h"

#include <algorithm>

namespace orch::internal {
namespace {

using Adjacency = std::vector<std::vector<int>>;

// The vertices __start__ reaches, in reverse post-order of a depth-first walk
// (iterative, so a long chain cannot exhaust the stack). `post_number`
// receives each vertex's post-order number, -1 for those not reached.
std::vector<int> reverse_post_order(const Adjacency& successors, std::vector<int>* post_number) {
  post_number->assign(successors.size(), -1);
  std::vector<bool> seen(successors.size(), false);
  std::vector<int> order;
  std::vector<std::pair<int, size_t>> walk{{kStartVertex, 0}};  // vertex, next successor
  seen[kStartVertex] = true;
  while (!walk.empty()) {
    int v = walk.back().first;
    const std::vector<int>& next = successors[static_cast<size_t>(v)];
    size_t i = walk.back().second++;
    if (i < next.size()) {
      int w = next[i];
      if (!seen[static_cast<size_t>(w)]) {
        seen[static_cast<size_t>(w)] = true;
        walk.emplace_back(w, 0);
      }
      continue;
    }
    (*post_number)[static_cast<size_t>(v)] = static_cast<int>(order.size());
    order.push_back(v);
    walk.pop_back();
  }
  std::reverse(order.begin(), order.end());
  return order;
}

// The nearest common dominator of `a` and `b` in the dominator tree built so
// far: the finger with the lower post-order number climbs.
int intersect(int a, int b, const std::vector<int>& idom, const std::vector<int>& post) {
  auto rank = [&post](int v) { return post[static_cast<size_t>(v)]; };
  auto up = [&idom](int v) { return idom[static_cast<size_t>(v)]; };
  while (a != b) {
    while (rank(a) < rank(b)) a = up(a);
    while (rank(b) < rank(a)) b = up(b);
  }
  return a;
}

}  // namespace

DominatorTree::DominatorTree(size_t vertex_count, const std::vector<GraphEdge>& edges) {
  const size_t n = vertex_count;
  Adjacency successors(n), predecessors(n);
  for (const GraphEdge& e : edges) {
    successors[static_cast<size_t>(e.source)].push_back(e.target);
    predecessors[static_cast<size_t>(e.target)].push_back(e.source);
  }
  std::vector<int> post;
  std::vector<int> order = reverse_post_order(successors, &post);

  // Cooper-Harvey-Kennedy: in reverse post-order each vertex's idom becomes the
  // common dominator of its predecessors that already have one; repeat until
  // nothing changes (a few passes: one more per level of loop nesting).
  idom_.assign(n, -1);
  idom_[kStartVertex] = kStartVertex;
  bool changed = true;
  while (changed) {
    changed = false;
    for (int v : order) {
      if (v == kStartVertex) continue;
      int next = -1;
      for (int p : predecessors[static_cast<size_t>(v)]) {
        if (idom_[static_cast<size_t>(p)] == -1) continue;  // unreachable, or not yet seen
        next = next == -1 ? p : intersect(p, next, idom_, post);
      }
      if (idom_[static_cast<size_t>(v)] != next) {
        idom_[static_cast<size_t>(v)] = next;
        changed = true;
      }
    }
  }

  // Number the dominator tree: `a` dominates `b` exactly when b's walk interval
  // lies inside a's.
  Adjacency children(n);
  for (int v : order) {
    if (v == kStartVertex) continue;
    children[static_cast<size_t>(idom_[static_cast<size_t>(v)])].push_back(v);
  }
  enter_.assign(n, -1);
  leave_.assign(n, -1);
  int clock = 0;
  std::vector<std::pair<int, size_t>> walk{{kStartVertex, 0}};  // vertex, next child
  enter_[kStartVertex] = clock++;
  while (!walk.empty()) {
    int v = walk.back().first;
    size_t i = walk.back().second++;
    if (i < children[static_cast<size_t>(v)].size()) {
      int c = children[static_cast<size_t>(v)][i];
      enter_[static_cast<size_t>(c)] = clock++;
      walk.emplace_back(c, 0);
      continue;
    }
    leave_[static_cast<size_t>(v)] = clock++;
    walk.pop_back();
  }
}

bool DominatorTree::dominates(int a, int b) const {
  if (a == b) return true;
  size_t x = static_cast<size_t>(a), y = static_cast<size_t>(b);
  if (enter_[x] < 0 || enter_[y] < 0) return false;
  return enter_[x] <= enter_[y] && leave_[y] <= leave_[x];
}

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
  // An edge closes a loop when its target dominates its source.
  DominatorTree dom(n, g->edges_);
  for (GraphEdge& e : g->edges_) e.back = dom.dominates(e.target, e.source);
  return g;
}

int CompiledGraph::vertex(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

}  // namespace orch::internal
