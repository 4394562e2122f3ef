// SPDX-License-Identifier: MIT
//
// Graph facts for validation: reachability from __start__, reachability of
// __end__, and cycles that nothing leaves. All walks are iterative, so a
// definition with a very long chain of nodes cannot exhaust the stack.
#include <algorithm>

#include "workflow/workflow_internal.h"
#include "workflow/workflow_vertices.h"

namespace orch::workflow_internal {
namespace {

// Vertices as the engine numbers them (workflow_vertices.h).
struct EdgeGraph {
  std::vector<std::vector<int>> out;
  std::vector<std::vector<int>> in;
};

EdgeGraph build_graph(const Workflow& wf) {
  EdgeGraph g;
  const size_t vertices = static_cast<size_t>(vertex_count(wf.nodes.size()));
  g.out.resize(vertices);
  g.in.resize(vertices);
  for (const Edge& e : wf.edges) {
    // Nothing leaves __end__ and nothing enters __start__.
    int s = e.source == kEndNode ? -1 : vertex_of(wf, e.source);
    int t = e.target == kStartNode ? -1 : vertex_of(wf, e.target);
    if (s < 0 || t < 0) continue;
    g.out[static_cast<size_t>(s)].push_back(t);
    g.in[static_cast<size_t>(t)].push_back(s);
  }
  return g;
}

std::vector<bool> walk(const std::vector<std::vector<int>>& adjacency, int from) {
  std::vector<bool> seen(adjacency.size(), false);
  std::vector<int> todo{from};
  seen[static_cast<size_t>(from)] = true;
  while (!todo.empty()) {
    int v = todo.back();
    todo.pop_back();
    for (int w : adjacency[static_cast<size_t>(v)]) {
      if (!seen[static_cast<size_t>(w)]) {
        seen[static_cast<size_t>(w)] = true;
        todo.push_back(w);
      }
    }
  }
  return seen;
}

// Tarjan's strongly connected components over the node vertices, iteratively.
// Returns the component id of each vertex (-1 for __start__ and __end__).
std::vector<int> components(const EdgeGraph& g) {
  const size_t vertices = g.out.size();
  std::vector<int> index(vertices, -1), low(vertices, 0);
  std::vector<int> comp(vertices, -1);
  std::vector<bool> on_stack(vertices, false);
  std::vector<int> stack;
  std::vector<std::pair<int, size_t>> calls;  // vertex, next out-edge to look at
  int counter = 0;
  int next_comp = 0;
  auto visit = [&](int v) {
    index[static_cast<size_t>(v)] = low[static_cast<size_t>(v)] = counter++;
    stack.push_back(v);
    on_stack[static_cast<size_t>(v)] = true;
    calls.emplace_back(v, 0);
  };
  for (int root = kFirstNodeVertex; root < static_cast<int>(vertices); ++root) {
    if (index[static_cast<size_t>(root)] != -1) continue;
    visit(root);
    while (!calls.empty()) {
      int v = calls.back().first;
      size_t pos = calls.back().second;
      const auto& outs = g.out[static_cast<size_t>(v)];
      if (pos < outs.size()) {
        calls.back().second = pos + 1;
        int w = outs[pos];
        if (w == kEndVertex) continue;  // __end__ is in no cycle
        if (index[static_cast<size_t>(w)] == -1) {
          visit(w);
        } else if (on_stack[static_cast<size_t>(w)]) {
          low[static_cast<size_t>(v)] =
              std::min(low[static_cast<size_t>(v)], index[static_cast<size_t>(w)]);
        }
        continue;
      }
      if (low[static_cast<size_t>(v)] == index[static_cast<size_t>(v)]) {
        int w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[static_cast<size_t>(w)] = false;
          comp[static_cast<size_t>(w)] = next_comp;
        } while (w != v);
        ++next_comp;
      }
      calls.pop_back();
      if (!calls.empty()) {
        int parent = calls.back().first;
        low[static_cast<size_t>(parent)] =
            std::min(low[static_cast<size_t>(parent)], low[static_cast<size_t>(v)]);
      }
    }
  }
  return comp;
}

}  // namespace

GraphFacts analyze_graph(const Workflow& wf) {
  GraphFacts facts;
  EdgeGraph g = build_graph(wf);
  std::vector<bool> from_start = walk(g.out, kStartVertex);
  std::vector<bool> to_end = walk(g.in, kEndVertex);
  facts.reachable.assign(from_start.begin() + kFirstNodeVertex, from_start.end());
  facts.reaches_end.assign(to_end.begin() + kFirstNodeVertex, to_end.end());
  facts.end_reachable = from_start[static_cast<size_t>(kEndVertex)];

  std::vector<int> comp = components(g);
  std::vector<std::vector<int>> members;  // node vertices by component
  for (int v = kFirstNodeVertex; v < static_cast<int>(g.out.size()); ++v) {
    size_t c = static_cast<size_t>(comp[static_cast<size_t>(v)]);
    if (members.size() <= c) members.resize(c + 1);
    members[c].push_back(v);  // ascending, as v ascends
  }
  for (const auto& set : members) {
    bool cyclic = set.size() > 1;
    bool leaves = false;
    for (int v : set) {
      for (int w : g.out[static_cast<size_t>(v)]) {
        if (w == v) cyclic = true;
        if (w == kEndVertex || comp[static_cast<size_t>(w)] != comp[static_cast<size_t>(v)]) leaves = true;
      }
    }
    if (!cyclic || leaves) continue;
    std::vector<int> nodes;  // the facts name nodes by index
    for (int v : set) nodes.push_back(vertex_node(v));
    facts.closed_cycles.push_back(std::move(nodes));
  }
  std::sort(facts.closed_cycles.begin(), facts.closed_cycles.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return facts;
}

}  // namespace orch::workflow_internal
