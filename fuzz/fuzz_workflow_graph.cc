// SPDX-License-Identifier: MIT
//
// Fuzzes validation and graph compilation with large generated graphs. The
// input is not JSON but a compact program that builds a workflow, so a few
// bytes make thousands of nodes, long chains, loops back, wide fans and route
// nodes:
//
//   byte 0     below 128: 1 + (byte % 62) nodes, a graph small enough for its
//              dominators to be checked; else bytes 1-2 give 1 + (value % 4000)
//   then commands, one opcode byte each, operands after it (a vertex is two
//   bytes, modulo node count + 2: the last two mean __start__ and __end__):
//     0 edge A B
//     1 route A K then K vertices: A becomes a route node with K targets;
//       even K also adds each route's conditional edge
//     2 chain A L: A -> A+1 -> ... -> A+L
//     3 fan A L: A -> A+1, ..., A -> A+L, and each of those -> __end__
//     4 loop A L: A+L -> A (a loop back over a chain)
//     5 breakpoint A: interrupt_before A
// Each definition is validated, parsed and compiled (even an invalid one: the
// engine only compiles valid ones, but compiling must never fail). For small
// graphs the dominators are checked against their definition: `a` dominates
// `b` exactly when `b` cannot be reached from __start__ once `a` is removed.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "orch/workflow.h"

namespace {

constexpr size_t kMaxNodes = 4000;
// With __start__ and __end__, at most 64 vertices: dominators are checked.
constexpr size_t kSmallNodes = 62;
// A little past the default cap of 50 000 edges, so that too_many_edges is
// reached too, but not so far that building the JSON dominates each run.
constexpr size_t kMaxEdges = 51000;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  size_t u16() {
    size_t low = byte();
    return low | static_cast<size_t>(byte()) << 8;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

class GraphProgram {
 public:
  explicit GraphProgram(size_t nodes) : count_(nodes), routes_(nodes) {}

  std::string name(size_t v) const {
    v %= count_ + 2;
    if (v == count_) return std::string(orch::kStartNode);
    if (v == count_ + 1) return std::string(orch::kEndNode);
    return "n" + std::to_string(v);
  }

  void edge(size_t a, size_t b) {
    if (full()) return;
    edges_.push_back(orch::Value::array({name(a), name(b)}));
  }

  void run(Reader* in) {
    while (!in->done()) {
      uint8_t op = in->byte() % 6;
      size_t a = in->u16();
      switch (op) {
        case 0:
          edge(a, in->u16());
          break;
        case 1:
          route(a % count_, in->byte() % 16, in);
          break;
        case 2:
          for (size_t i = 0, n = in->u16() % count_; i < n && !full(); ++i) edge(a + i, a + i + 1);
          break;
        case 3:
          for (size_t i = 1, n = in->u16() % count_; i <= n && !full(); ++i) {
            edge(a, a + i);
            edge(a + i, count_ + 1);
          }
          break;
        case 4:
          edge(a + in->u16() % count_, a);
          break;
        case 5:
          breakpoints_.push_back(name(a));
          break;
      }
    }
  }

  orch::Value definition() const {
    orch::Value nodes = orch::Value::object();
    for (size_t v = 0; v < count_; ++v) {
      if (routes_[v].is_null()) {
        nodes.set(name(v), orch::Value::object());
      } else {
        nodes.set(name(v), orch::Value::object({{"type", "route"},
                                                {"input", "state.pick"},
                                                {"routes", routes_[v]}}));
      }
    }
    orch::Value breakpoints = orch::Value::array();
    for (const auto& b : breakpoints_) breakpoints.push_back(b);
    return orch::Value::object(
        {{"nodes", nodes}, {"edges", edges_}, {"interrupt_before", breakpoints}});
  }

 private:
  void route(size_t v, size_t targets, Reader* in) {
    if (routes_[v].is_null()) routes_[v] = orch::Value::object();
    for (size_t k = 0; k < targets; ++k) {
      std::string value = "v" + std::to_string(routes_[v].size());
      std::string target = name(in->u16());
      if (full()) continue;
      routes_[v].set(value, target);
      ++route_targets_;
      if (targets % 2 == 0) edges_.push_back(orch::Value::array({name(v) + ":" + value, target}));
    }
  }

  // Edges and route targets together, as the cap counts them.
  bool full() const { return edges_.size() + route_targets_ >= kMaxEdges; }

  size_t count_;
  size_t route_targets_ = 0;
  std::vector<orch::Value> routes_;  // per node: null, or its `routes` object
  orch::Value edges_ = orch::Value::array();
  std::vector<std::string> breakpoints_;
};

// Vertices __start__ reaches in `g` without passing through `removed`.
std::vector<bool> reachable_without(const orch::internal::CompiledGraph& g, int removed) {
  std::vector<bool> seen(g.vertex_count(), false);
  if (removed == orch::internal::kStartVertex) return seen;
  std::vector<int> todo{orch::internal::kStartVertex};
  seen[orch::internal::kStartVertex] = true;
  while (!todo.empty()) {
    int v = todo.back();
    todo.pop_back();
    for (int e : g.out_edges(v)) {
      int t = g.edges()[static_cast<size_t>(e)].target;
      if (t == removed || seen[static_cast<size_t>(t)]) continue;
      seen[static_cast<size_t>(t)] = true;
      todo.push_back(t);
    }
  }
  return seen;
}

void check_dominators(const orch::internal::CompiledGraph& g) {
  const int n = static_cast<int>(g.vertex_count());
  orch::internal::DominatorTree tree(g.vertex_count(), g.edges());
  std::vector<bool> reachable = reachable_without(g, -1);
  for (int a = 0; a < n; ++a) {
    std::vector<bool> without = reachable_without(g, a);
    for (int b = 0; b < n; ++b) {
      bool both_reachable = reachable[static_cast<size_t>(a)] && reachable[static_cast<size_t>(b)];
      bool want = a == b || (both_reachable && !without[static_cast<size_t>(b)]);
      if (tree.dominates(a, b) != want) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  size_t kind = in.byte();
  GraphProgram program(kind < 128 ? 1 + kind % kSmallNodes : 1 + in.u16() % kMaxNodes);
  program.run(&in);
  orch::Value definition = program.definition();

  auto issues = orch::validate_workflow(definition);
  auto wf = orch::parse_workflow(definition);
  if (!wf.ok()) return 0;  // too many edges
  auto compiled = orch::internal::CompiledGraph::compile(*wf);
  if (compiled->vertex_count() <= kSmallNodes + 2) check_dominators(*compiled);
  // These definitions have no field-level problems, so the typed checks must
  // agree with the JSON ones.
  if (orch::workflow_is_valid(issues) != orch::workflow_is_valid(orch::validate_workflow(**wf))) {
    std::abort();
  }
  return 0;
}
