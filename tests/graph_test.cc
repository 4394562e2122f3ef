// SPDX-License-Identifier: MIT
//
// CompiledGraph's dominators and back edges: known answers on small graphs,
// agreement with the textbook data-flow algorithm on random graphs, graphs
// crafted against iterative algorithms, and a 10 000-node workflow that
// validates and compiles.
#include <chrono>
#include <random>

#include "catch.h"
#include "engine/graph.h"
#include "orch/workflow.h"
#include "support/figures.h"

using orch::internal::CompiledGraph;
using orch::internal::DominatorTree;
using orch::internal::GraphEdge;

namespace {

std::vector<GraphEdge> edge_list(const std::vector<std::pair<int, int>>& pairs) {
  std::vector<GraphEdge> edges;
  for (const auto& [s, t] : pairs) edges.push_back(GraphEdge{s, t, std::nullopt, false});
  return edges;
}

// The textbook algorithm orch used before, kept here as the reference:
// dom(start) = {start}, dom(v) = {v} + the intersection of dom(p) over the
// reachable predecessors p, iterated to a fixed point. An unreachable vertex
// is dominated only by itself. O(n^3), fine for a few dozen vertices.
std::vector<std::vector<bool>> reference_dominators(size_t n, const std::vector<GraphEdge>& edges) {
  std::vector<bool> reachable(n, false);
  reachable[0] = true;
  for (bool grew = true; grew;) {
    grew = false;
    for (const GraphEdge& e : edges) {
      if (reachable[static_cast<size_t>(e.source)] && !reachable[static_cast<size_t>(e.target)]) {
        reachable[static_cast<size_t>(e.target)] = true;
        grew = true;
      }
    }
  }
  std::vector<std::vector<bool>> dom(n, std::vector<bool>(n, true));
  for (size_t v = 0; v < n; ++v) {
    if (v == 0 || !reachable[v]) {
      dom[v].assign(n, false);
      dom[v][v] = true;
    }
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t v = 1; v < n; ++v) {
      if (!reachable[v]) continue;
      std::vector<bool> next(n, true);
      for (const GraphEdge& e : edges) {
        size_t p = static_cast<size_t>(e.source);
        if (static_cast<size_t>(e.target) != v || !reachable[p]) continue;
        for (size_t i = 0; i < n; ++i) next[i] = next[i] && dom[p][i];
      }
      next[v] = true;
      if (next != dom[v]) {
        dom[v] = next;
        changed = true;
      }
    }
  }
  return dom;  // dom[b][a]: a dominates b
}

void check_against_reference(size_t n, const std::vector<GraphEdge>& edges) {
  DominatorTree tree(n, edges);
  auto dom = reference_dominators(n, edges);
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = 0; b < n; ++b) {
      INFO("a=" << a << " b=" << b);
      CHECK(tree.dominates(static_cast<int>(a), static_cast<int>(b)) == dom[b][a]);
    }
  }
}

std::shared_ptr<const CompiledGraph> compile(const std::string& json) {
  auto wf = orch::parse_workflow_json(json);
  REQUIRE(wf.ok());
  return CompiledGraph::compile(*wf);
}

// "a->b" for each back edge of the compiled graph, in edge order.
std::vector<std::string> back_edges(const CompiledGraph& g) {
  std::vector<std::string> out;
  for (const GraphEdge& e : g.edges()) {
    if (e.back) out.push_back(g.name(e.source) + "->" + g.name(e.target));
  }
  return out;
}

}  // namespace

TEST_CASE("immediate dominators of small known graphs", "[graph]") {
  SECTION("a diamond joins at its bottom") {
    // 0 -> 2 -> {3, 4} -> 5 -> 1
    auto edges = edge_list({{0, 2}, {2, 3}, {2, 4}, {3, 5}, {4, 5}, {5, 1}});
    DominatorTree t(6, edges);
    CHECK(t.idom(0) == 0);
    CHECK(t.idom(2) == 0);
    CHECK(t.idom(3) == 2);
    CHECK(t.idom(4) == 2);
    CHECK(t.idom(5) == 2);
    CHECK(t.idom(1) == 5);
    CHECK(t.dominates(2, 1));
    CHECK_FALSE(t.dominates(3, 5));
    CHECK_FALSE(t.dominates(4, 1));
    check_against_reference(6, edges);
  }
  SECTION("unreachable vertices dominate and are dominated by only themselves") {
    // 3 and 4 form a loop nothing enters; 4 also points into the reachable part.
    auto edges = edge_list({{0, 2}, {2, 1}, {3, 4}, {4, 3}, {4, 2}, {3, 3}});
    DominatorTree t(5, edges);
    CHECK(t.idom(3) == -1);
    CHECK(t.idom(4) == -1);
    CHECK(t.idom(2) == 0);
    CHECK(t.dominates(3, 3));
    CHECK_FALSE(t.dominates(4, 3));
    CHECK_FALSE(t.dominates(3, 2));
    CHECK_FALSE(t.dominates(0, 3));
    check_against_reference(5, edges);
  }
  SECTION("a loop entered from two places has no single head") {
    // 0 -> 2, 0 -> 3, 2 <-> 3: neither dominates the other.
    auto edges = edge_list({{0, 2}, {0, 3}, {2, 3}, {3, 2}, {3, 1}});
    DominatorTree t(4, edges);
    CHECK(t.idom(2) == 0);
    CHECK(t.idom(3) == 0);
    CHECK_FALSE(t.dominates(2, 3));
    CHECK_FALSE(t.dominates(3, 2));
    check_against_reference(4, edges);
  }
}

TEST_CASE("back edges of loops, nested loops, self-loops and joins", "[graph]") {
  SECTION("a loop with a conditional exit") {
    auto g = compile(R"({"nodes": {"a": {}, "b": {}, "r": {"type": "route",
        "routes": {"again": "a", "done": "__end__"}}},
      "edges": [["__start__", "a"], ["a", "b"], ["b", "r"],
                ["r:again", "a"], ["r:done", "__end__"]]})");
    CHECK(back_edges(*g) == std::vector<std::string>{"r->a"});
  }
  SECTION("nested loops close at their own heads") {
    auto g = compile(R"({"nodes": {"outer": {}, "inner": {}, "ri": {"type": "route",
        "routes": {"more": "inner", "up": "ro"}}, "ro": {"type": "route",
        "routes": {"more": "outer", "done": "__end__"}}},
      "edges": [["__start__", "outer"], ["outer", "inner"], ["inner", "ri"],
                ["ri:more", "inner"], ["ri:up", "ro"],
                ["ro:more", "outer"], ["ro:done", "__end__"]]})");
    CHECK(back_edges(*g) == std::vector<std::string>{"ri->inner", "ro->outer"});
  }
  SECTION("a self-loop is a back edge") {
    auto g = compile(R"({"nodes": {"a": {"type": "route", "routes": {"x": "a", "y": "__end__"}}},
      "edges": [["__start__", "a"], ["a:x", "a"], ["a:y", "__end__"]]})");
    CHECK(back_edges(*g) == std::vector<std::string>{"a->a"});
  }
  SECTION("a diamond join has no back edge") {
    auto g = compile(R"({"nodes": {"a": {}, "b": {}, "c": {}, "d": {}},
      "edges": [["__start__", "a"], ["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"],
                ["d", "__end__"]]})");
    CHECK(back_edges(*g).empty());
  }
  SECTION("edges between nodes __start__ cannot reach") {
    // x <-> y is unreachable: only the self-loop on y counts as closing a loop.
    auto g = compile(R"({"nodes": {"a": {}, "x": {}, "y": {}},
      "edges": [["__start__", "a"], ["a", "__end__"], ["x", "y"], ["y", "x"], ["y", "y"],
                ["y", "a"]]})");
    CHECK(back_edges(*g) == std::vector<std::string>{"y->y"});
  }
}

TEST_CASE("dominators agree with the data-flow algorithm on random graphs", "[graph]") {
  std::mt19937 random(20261206);
  for (int round = 0; round < 300; ++round) {
    size_t n = 2 + random() % 30;
    size_t m = random() % (3 * n + 1);
    std::vector<GraphEdge> edges;
    for (size_t i = 0; i < m; ++i) {
      int s = static_cast<int>(random() % n);
      int t = static_cast<int>(random() % n);
      edges.push_back(GraphEdge{s, t, std::nullopt, false});
    }
    INFO("round " << round << ", " << n << " vertices, " << m << " edges");
    check_against_reference(n, edges);
  }
}

TEST_CASE("graphs that make iterative dominator algorithms quadratic", "[graph]") {
  // Cooper-Harvey-Kennedy took 14 s on the first of these at 50 000 vertices
  // and 1 s on the second; Lengauer-Tarjan is O(m log n) on both.
  constexpr int kN = 50000;
  const int last = kN + 1;
  auto edge = [](int s, int t) { return GraphEdge{s, t, std::nullopt, false}; };
  SECTION("a chain linked both ways, entered at both ends") {
    std::vector<GraphEdge> edges{edge(0, 2), edge(0, last)};
    for (int v = 2; v < last; ++v) {
      edges.push_back(edge(v, v + 1));
      edges.push_back(edge(v + 1, v));
    }
    DominatorTree t(kN + 2, edges);
    for (int v : {2, 3, kN / 2, last - 1, last}) CHECK(t.idom(v) == 0);
    CHECK_FALSE(t.dominates(kN / 2, kN / 2 + 1));
  }
  SECTION("loops nested 25 000 deep") {
    std::vector<GraphEdge> edges{edge(0, 2)};
    for (int v = 2; v < last; ++v) edges.push_back(edge(v, v + 1));
    for (int i = 0; i < kN / 2; ++i) edges.push_back(edge(last - i, 2 + i));
    DominatorTree t(kN + 2, edges);
    for (int v : {3, kN / 2, last}) CHECK(t.idom(v) == v - 1);
    CHECK(t.dominates(2, last));
    CHECK(t.dominates(kN / 2, kN / 2 + 7));
    CHECK_FALSE(t.dominates(kN / 2 + 7, kN / 2));
  }
}

TEST_CASE("a 10 000-node workflow validates and compiles", "[graph]") {
  // A chain of 6 000 nodes where every 10th is a route node that loops back 9
  // nodes or goes on, and a fan of 4 000 nodes from the chain's head.
  constexpr int kChain = 6000, kFan = 4000;
  auto name = [](const char* prefix, int i) { return prefix + std::to_string(i); };
  orch::Value nodes = orch::Value::object();
  orch::Value edges = orch::Value::array();
  auto edge = [&edges](const std::string& s, const std::string& t) {
    edges.push_back(orch::Value::array({s, t}));
  };
  edge("__start__", "c0");
  int loops = 0;
  for (int i = 0; i < kChain; ++i) {
    std::string next = i + 1 < kChain ? name("c", i + 1) : "__end__";
    if (i % 10 == 9) {
      nodes.set(name("c", i), orch::Value::object({{"type", "route"},
                                                   {"input", "state.again"},
                                                   {"routes", orch::Value::object({
                                                                  {"again", name("c", i - 9)},
                                                                  {"on", next},
                                                              })}}));
      edge(name("c", i) + ":again", name("c", i - 9));
      edge(name("c", i) + ":on", next);
      ++loops;
    } else {
      nodes.set(name("c", i), orch::Value::object({{"prompt_template", "{{state.x}}"}}));
      edge(name("c", i), next);
    }
  }
  for (int i = 0; i < kFan; ++i) {
    nodes.set(name("f", i), orch::Value::object());
    edge("c0", name("f", i));
    edge(name("f", i), "__end__");
  }
  orch::Value definition = orch::Value::object({{"nodes", nodes}, {"edges", edges}});

  auto started = std::chrono::steady_clock::now();
  auto issues = orch::validate_workflow(definition);
  INFO((issues.empty() ? std::string() : orch::to_string(issues.front())));
  CHECK(orch::workflow_is_valid(issues));
  auto wf = orch::parse_workflow(definition);
  REQUIRE(wf.ok());
  CHECK((*wf)->nodes.size() == 10000);
  auto g = CompiledGraph::compile(*wf);
  size_t back = 0;
  for (const GraphEdge& e : g->edges()) {
    if (!e.back) continue;
    ++back;
    // Every back edge is a loop's "again" route.
    CHECK(e.condition == std::optional<std::string>("again"));
  }
  CHECK(back == static_cast<size_t>(loops));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - started)
                .count();
  orch::testing::report_figures(
      "graph_test",
      "10 000-node workflow validated, parsed and compiled in " + std::to_string(ms) + " ms");
}
