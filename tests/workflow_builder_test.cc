// SPDX-License-Identifier: MIT
//
// WorkflowBuilder: workflows made in C++ are validated like JSON ones.
#include <chrono>

#include "catch.h"
#include "orch/engine.h"
#include "orch/workflow.h"

using orch::NodeType;
using orch::Value;

namespace {

orch::NodeFunction noop() {
  return [](const orch::NodeCall&) -> orch::Result<orch::NodeOutput> { return orch::NodeOutput(); };
}

}  // namespace

TEST_CASE("the header example builds", "[workflow][builder]") {
  orch::WorkflowBuilder b("triage");
  b.add_function_node("classify", noop())
      .add_function_node("fix", noop())
      .add_node(orch::route_node("pick", "state.kind",
                                 {{"bug", "fix"}, {"other", std::string(orch::kEndNode)}}))
      .add_edge(orch::kStartNode, "classify")
      .add_edge("classify", "pick")
      .add_conditional_edge("pick", "bug", "fix")
      .add_edge("fix", orch::kEndNode);
  auto wf = b.build();
  INFO((wf.ok() ? std::string() : wf.status().message()));
  REQUIRE(wf.ok());
  const orch::Workflow& w = **wf;
  CHECK(w.id == "triage");
  CHECK(w.definition.is_null());
  REQUIRE(w.find_node("classify") != nullptr);
  CHECK(static_cast<bool>(w.find_node("classify")->function));
  CHECK(w.find_node("pick")->type == NodeType::kRoute);
  // The missing conditional edge pick:other -> __end__ was implied by routes.
  bool implied = false;
  for (const auto& e : w.edges) {
    implied = implied || (e.source == "pick" && e.condition == "other" && e.target == "__end__");
  }
  CHECK(implied);
  CHECK(w.edges.size() == 5);
}

TEST_CASE("every builder setter lands in the workflow", "[workflow][builder]") {
  orch::WorkflowBuilder b("full");
  b.name("Full")
      .version(3)
      .recursion_limit(40)
      .durability("full")
      .defaults(Value::object({{"model", "m"}}))
      .add_state_key("notes", orch::ReducerKind::kAppend, false, "array")
      .add_state_key("scratch", orch::ReducerKind::kLastValue, true)
      .add_node(orch::transform_node("seed", Value::object({{"notes", "start"}})))
      .add_node(orch::interrupt_node("approve", "Approve {{state.notes}}?"))
      .add_function_node("work", noop())
      .add_edge(orch::kStartNode, "seed")
      .add_edge("seed", "approve")
      .add_edge("approve", "work")
      .add_edge("work", orch::kEndNode)
      .interrupt_before("work")
      .interrupt_after("seed");
  auto wf = b.build();
  REQUIRE(wf.ok());
  const orch::Workflow& w = **wf;
  CHECK(w.name == "Full");
  CHECK(w.version == 3);
  CHECK(w.recursion_limit == 40);
  CHECK(w.durability == "full");
  CHECK(w.defaults["model"].as_string() == "m");
  REQUIRE(w.find_state_key("scratch") != nullptr);
  CHECK(w.find_state_key("scratch")->ephemeral);
  CHECK(w.find_state_key("notes")->type == "array");
  CHECK(w.find_node("approve")->interrupt.message == "Approve {{state.notes}}?");
  CHECK(w.find_node("seed")->transform.updates["notes"].as_string() == "start");
  CHECK(w.interrupt_before == std::vector<std::string>{"work"});
  CHECK(w.interrupt_after == std::vector<std::string>{"seed"});

  // Its definition parses back to the same workflow (callables aside).
  Value def = orch::workflow_to_definition(w);
  CHECK(def["nodes"]["work"]["type"].as_string() == "task");
  CHECK(def["state_schema"]["notes"]["reducer"].as_string() == "append");
  CHECK(orch::workflow_is_valid(orch::validate_workflow(def)));
  auto parsed = orch::parse_workflow(def);
  REQUIRE(parsed.ok());
  CHECK(orch::workflow_to_definition(**parsed) == def);
}

TEST_CASE("build lists every error", "[workflow][builder]") {
  orch::WorkflowBuilder b;
  b.add_function_node("a", noop())
      .add_function_node("a", noop())
      .add_node(orch::route_node("r", "state.k", {{"x", "ghost"}}, std::string("y")))
      .add_edge(orch::kStartNode, "a")
      .add_edge("a", "r")
      .recursion_limit(0)
      .durability("sometimes");
  auto wf = b.build();
  REQUIRE_FALSE(wf.ok());
  CHECK(wf.status().code() == orch::StatusCode::kInvalidArgument);
  const std::string& m = wf.status().message();
  CHECK(m.rfind("workflow is invalid: ", 0) == 0);
  CHECK(m.find("invalid_field - recursion_limit") != std::string::npos);
  CHECK(m.find("invalid_field - durability") != std::string::npos);
  CHECK(m.find("duplicate_node a: node is defined more than once") != std::string::npos);
  CHECK(m.find("nodes_in_edges_exist ghost") != std::string::npos);
  CHECK(m.find("invalid_route_target r x") != std::string::npos);
  CHECK(m.find("invalid_route_default r default") != std::string::npos);
  CHECK(m.find("end_unreachable") != std::string::npos);  // r -> ghost leads nowhere
}

TEST_CASE("builder checks match the JSON checks", "[workflow][builder]") {
  SECTION("no edges") {
    orch::WorkflowBuilder b;
    b.add_function_node("lonely", noop());
    auto wf = b.build();
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().message().find("unreachable_node lonely") != std::string::npos);
    CHECK(wf.status().message().find("end_unreachable") != std::string::npos);
  }
  SECTION("a trapped loop") {
    orch::WorkflowBuilder b;
    b.add_function_node("a", noop())
        .add_function_node("b", noop())
        .add_edge(orch::kStartNode, "a")
        .add_edge("a", "b")
        .add_edge("b", "a")
        .add_edge(orch::kStartNode, orch::kEndNode);
    auto wf = b.build();
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().message().find("unintentional_cycle a") != std::string::npos);
  }
  SECTION("a loop with a conditional exit") {
    orch::WorkflowBuilder b;
    b.add_function_node("work", noop())
        .add_node(orch::route_node("check", "state.done",
                                   {{"no", "work"}, {"yes", std::string(orch::kEndNode)}}))
        .add_edge(orch::kStartNode, "work")
        .add_edge("work", "check");
    CHECK(b.build().ok());
  }
  SECTION("a transform with updates that are not an object") {
    orch::WorkflowBuilder b;
    b.add_node(orch::transform_node("t", Value::array({1})))
        .add_edge(orch::kStartNode, "t")
        .add_edge("t", orch::kEndNode);
    auto wf = b.build();
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().message().find("invalid_field t updates") != std::string::npos);
    // A string holding a JSON object is accepted, as in definitions.
    CHECK(orch::transform_node("t", Value("{\"a\": 1}")).transform.updates["a"].as_int() == 1);
  }
  SECTION("warnings do not stop the build") {
    orch::WorkflowBuilder b;
    orch::Node ask = orch::interrupt_node("ask", "{{state.unknown}}");
    b.add_state_key("known", orch::ReducerKind::kLastValue)
        .add_node(ask)
        .add_edge(orch::kStartNode, "ask")
        .add_edge("ask", orch::kEndNode)
        .add_edge("ask", orch::kEndNode);
    auto wf = b.build();
    REQUIRE(wf.ok());
    auto issues = orch::validate_workflow(**wf);
    REQUIRE(issues.size() == 2);
    CHECK(issues[0].type == "duplicate_edge");
    CHECK(issues[1].type == "undefined_state_key");
  }
  SECTION("a breakpoint on a node that does not exist") {
    orch::WorkflowBuilder b;
    b.add_function_node("a", noop())
        .add_edge(orch::kStartNode, "a")
        .add_edge("a", orch::kEndNode)
        .interrupt_after("a")
        .interrupt_before("nobody");
    auto wf = b.build();
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().message().find("unknown_interrupt_node nobody interrupt_before") !=
          std::string::npos);
  }
  SECTION("a bad node name") {
    orch::WorkflowBuilder b;
    b.add_function_node("a:b", noop())
        .add_edge(orch::kStartNode, "a:b")
        .add_edge("a:b", orch::kEndNode);
    auto wf = b.build();
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().message().find("invalid_node_name a:b") != std::string::npos);
  }
}

TEST_CASE("bind_functions binds C++ functions to task nodes of a copy", "[workflow]") {
  auto parsed = orch::parse_workflow_json(R"({
    "nodes": {"a": {"type": "task"}, "r": {"type": "route", "input": "state.x", "routes": {"y": "__end__"}}},
    "edges": [["__start__", "a"], ["a", "r"], ["r:y", "__end__"]]})");
  REQUIRE(parsed.ok());
  orch::NodeFunction fn = [](const orch::NodeCall&) -> orch::Result<orch::NodeOutput> {
    return orch::NodeOutput(orch::Value::object({{"x", "y"}}));
  };
  auto bound = orch::bind_functions(*parsed, {{"a", fn}});
  REQUIRE(bound.ok());
  CHECK((*bound)->find_node("a")->function);
  CHECK_FALSE((*parsed)->find_node("a")->function);  // the parsed workflow is untouched
  CHECK(orch::bind_functions(*parsed, {{"nope", fn}}).status().message() == "node nope is not in the workflow");
  CHECK(orch::bind_functions(*parsed, {{"r", fn}}).status().message() ==
        "node r is a route node; only task and agent nodes run functions");
  CHECK(orch::bind_functions(*parsed, {{"a", fn}, {"a", fn}}).status().message() == "node a is bound twice");
  CHECK(orch::bind_functions(*parsed, {{"a", orch::NodeFunction()}}).status().code() ==
        orch::StatusCode::kInvalidArgument);

  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto run = (*engine)->start_run(*bound, {});
  REQUIRE(run.ok());
  auto done = (*engine)->wait(*run, std::chrono::seconds(10));
  REQUIRE(done.ok());
  CHECK(done->status == orch::RunStatus::kCompleted);
}
