// SPDX-License-Identifier: MIT
//
// Scheduler::to_value and checkpoint_metadata keep their answers for small
// graphs per thread (equal states share one Value): what they write must
// still be each state's own, equal to what a scheduler builds afresh, and a
// kept answer must never be another graph's.
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

// __start__ fans out to `a` and `b`; `a` goes straight to the join, `b`
// through `c`: after the first superstep the join waits with one in-edge
// fired.
std::shared_ptr<const CompiledGraph> uneven_join(const std::string& a, const std::string& b) {
  return compile(R"({"nodes": {")" + a + R"(": {}, ")" + b + R"(": {}, "c": {}, "join": {}},
    "edges": [["__start__",")" + a + R"("],["__start__",")" + b + R"("],[")" + a + R"(","join"],[")" + b +
                 R"(","c"],["c","join"],["join","__end__"]]})");
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
  auto graph = uneven_join("a", "b");
  auto same_workflow = uneven_join("a", "b");  // another graph: nothing kept for it yet
  Scheduler first(graph);
  first.start();
  const Value started = first.to_value();  // const: a non-const [] would unshare it
  CHECK(started["ready"] == names({"a", "b"}));
  CHECK(started.find("end_reached") == nullptr);

  // Another run of the graph in the same state: the same answer, shared.
  Scheduler second(graph);
  second.start();
  const Value again = second.to_value();
  CHECK(again == started);
  CHECK(again.shares_storage_with(started));
  const Value metadata = second.checkpoint_metadata();
  CHECK(metadata.shares_storage_with(first.checkpoint_metadata()));
  CHECK(metadata["scheduler"].shares_storage_with(started));
  CHECK(metadata["workflow_version"] == Value(graph->workflow().version));

  // Later states are their own, and equal to what a graph with nothing kept
  // builds for the same state.
  run_superstep(second);
  const Value waiting = second.to_value();
  CHECK(waiting["ready"] == names({"c"}));
  REQUIRE(waiting["fired"].size() == 1);
  const auto& fired = graph->edges()[static_cast<size_t>(waiting["fired"].as_array()[0].as_int())];
  CHECK(graph->name(fired.source) == "a");
  CHECK(graph->name(fired.target) == "join");
  Scheduler fresh(same_workflow);
  fresh.start();
  run_superstep(fresh);
  CHECK(fresh.to_value() == waiting);
  CHECK_FALSE(fresh.to_value().shares_storage_with(waiting));

  run_superstep(second);
  CHECK(second.to_value()["ready"] == names({"join"}));
  run_superstep(second);
  const Value ended = second.to_value();
  CHECK(ended.find("ready") == nullptr);
  CHECK(ended["end_reached"] == Value(true));

  // A kept state reads back as the scheduler it came from.
  auto restored = Scheduler::from_value(graph, waiting);
  REQUIRE(restored.ok());
  CHECK(restored->to_value() == waiting);
  CHECK(first.to_value() == started);  // the first run, still where it was
}

TEST_CASE("a scheduler state kept for one graph is not another's", "[scheduler]") {
  Value ab;
  {
    auto graph = uneven_join("a", "b");
    Scheduler s(graph);
    s.start();
    ab = s.to_value();
  }
  // The same shape with other names, while the first graph lives on in
  // nothing but the kept answer, then once more in a fresh graph.
  for (int round = 0; round < 2; ++round) {
    auto graph = uneven_join("x", "y");
    Scheduler s(graph);
    s.start();
    const Value xy = s.to_value();
    CHECK(xy["ready"] == names({"x", "y"}));
    CHECK(s.checkpoint_metadata()["scheduler"]["ready"] == names({"x", "y"}));
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
    const Value v = s.to_value();
    CHECK(v["route_results"]["pick"] == Value(route));
    CHECK(v["ready"] == Value::array({route == "left" ? "l" : "r"}));
    CHECK(v["dead"].size() == 2);  // the other branch, and what only it led to
    const Value metadata = s.checkpoint_metadata();
    CHECK(metadata["route_results"]["pick"] == Value(route));
    CHECK(metadata["scheduler"] == v);
  }
}
