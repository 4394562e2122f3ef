// SPDX-License-Identifier: MIT
//
// Scheduler::to_value keeps its answers for small graphs per thread (equal
// states share one Value): what it writes must still be each state's own,
// and a kept answer must never be another graph's.
#include <memory>
#include <string>

#include "catch.h"
#include "engine/graph.h"
#include "engine/scheduler.h"
#include "orch/workflow.h"

using orch::Value;
using orch::internal::CompiledGraph;
using orch::internal::Scheduler;

namespace {

std::shared_ptr<const CompiledGraph> compile(const std::string& json) {
  auto wf = orch::parse_workflow_json(json);
  REQUIRE(wf.ok());
  return CompiledGraph::compile(*wf);
}

// __start__ fans out to the two named nodes, which join in `join`.
std::shared_ptr<const CompiledGraph> fan_out(const std::string& a, const std::string& b) {
  return compile(R"({"nodes": {")" + a + R"(": {}, ")" + b + R"(": {}, "join": {}},
    "edges": [["__start__",")" + a + R"("],["__start__",")" + b + R"("],[")" + a + R"(","join"],[")" + b +
                 R"(","join"],["join","__end__"]]})");
}

Value names(std::initializer_list<const char*> list) {
  Value out = Value::array();
  for (const char* n : list) out.push_back(n);
  return out;
}

// Runs every ready node of the superstep.
void run_superstep(Scheduler& s) {
  for (int v : s.take_ready()) s.node_finished(v, nullptr, nullptr);
  s.settle();
}

}  // namespace

TEST_CASE("scheduler states serialize as their own, kept or built", "[scheduler]") {
  auto graph = fan_out("a", "b");
  Scheduler first(graph);
  first.start();
  Value started = first.to_value();
  CHECK(started["edge_count"] == Value(5));
  CHECK(started["fired"] == Value::array({0, 1}));
  CHECK(started["ready"] == names({"a", "b"}));
  CHECK(started.find("end_reached") == nullptr);

  // Another run of the graph in the same state: the same answer, shared.
  Scheduler second(graph);
  second.start();
  Value again = second.to_value();
  CHECK(again == started);
  CHECK(again.shares_storage_with(started));

  // Each later state is its own, and reads back as the scheduler it came from.
  run_superstep(second);
  Value joined = second.to_value();
  CHECK(joined["fired"] == Value::array({2, 3}));
  CHECK(joined["ready"] == Value::array({"join"}));
  run_superstep(second);
  Value ended = second.to_value();
  CHECK(ended["fired"] == Value::array({4}));
  CHECK(ended.find("ready") == nullptr);
  CHECK(ended["end_reached"] == Value(true));
  auto restored = Scheduler::from_value(graph, joined);
  REQUIRE(restored.ok());
  CHECK(restored->to_value() == joined);
  CHECK(first.to_value() == started);  // the first run, still where it was
}

TEST_CASE("a scheduler state kept for one graph is not another's", "[scheduler]") {
  Value ab;
  {
    auto graph = fan_out("a", "b");
    Scheduler s(graph);
    s.start();
    ab = s.to_value();
  }
  // The same shape with other names, while the first graph lives on in
  // nothing but the kept answer, then once more in a fresh graph.
  for (int round = 0; round < 2; ++round) {
    auto graph = fan_out("x", "y");
    Scheduler s(graph);
    s.start();
    Value xy = s.to_value();
    CHECK(xy["ready"] == names({"x", "y"}));
    CHECK(xy["fired"] == ab["fired"]);
  }
  CHECK(ab["ready"] == names({"a", "b"}));
}

TEST_CASE("scheduler states with routes are written in full", "[scheduler]") {
  auto graph = compile(R"({"nodes": {"pick": {"type": "route", "input": "state.x", "routes": {"left": "l", "right": "r"}},
    "l": {}, "r": {}},
    "edges": [["__start__","pick"],["pick:left","l"],["pick:right","r"],["l","__end__"],["r","__end__"]]})");
  for (const std::string route : {"left", "right"}) {
    Scheduler s(graph);
    s.start();
    for (int v : s.take_ready()) s.node_finished(v, &route, nullptr);
    s.settle();
    Value v = s.to_value();
    CHECK(v["route_results"]["pick"] == Value(route));
    CHECK(v["ready"] == Value::array({route == "left" ? "l" : "r"}));
  }
}
