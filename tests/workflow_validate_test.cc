// SPDX-License-Identifier: MIT
//
// Validation details the corpus does not show: NullBoiler's exact messages,
// the issue text format, the template scan and the graph facts.
#include "catch.h"
#include "orch/workflow.h"

using orch::ValidationIssue;
using orch::Value;

namespace {

std::vector<ValidationIssue> validate(const std::string& json) {
  return orch::validate_workflow_json(json);
}

const ValidationIssue* find(const std::vector<ValidationIssue>& issues, const std::string& type) {
  for (const auto& i : issues) {
    if (i.type == type) return &i;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a send target that is not a task or agent node is a validation error", "[workflow][validate]") {
  // Found when the workflow is checked, not when a run reaches the send node.
  auto issues = validate(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "w"},
      "w": {"type": "transform", "updates": {"a": 1}}},
    "edges": [["__start__","fan"],["fan","__end__"]]})");
  const ValidationIssue* i = find(issues, "invalid_send_target_type");
  REQUIRE(i != nullptr);
  CHECK_FALSE(i->warning);
  CHECK(i->message.find("must be a task or agent node") != std::string::npos);
  CHECK(find(validate(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "w"},
      "w": {"type": "task", "prompt_template": "{{item}}"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})"), "invalid_send_target_type") == nullptr);
}

TEST_CASE("NullBoiler's messages are kept", "[workflow][validate]") {
  auto message = [](const std::string& json, const std::string& type) {
    auto issues = validate(json);
    const ValidationIssue* i = find(issues, type);
    INFO(json);
    REQUIRE(i != nullptr);
    return i->message;
  };
  CHECK(message("{", "parse_error") == "failed to parse workflow JSON");
  CHECK(message("1", "parse_error") == "workflow must be a JSON object");
  CHECK(message(R"({"edges": []})", "missing_field") == "workflow must have a 'nodes' object");
  CHECK(message(R"({"nodes": 1, "edges": []})", "missing_field") == "'nodes' must be an object");
  CHECK(message(R"({"nodes": {}})", "missing_field") == "workflow must have an 'edges' array");
  CHECK(message(R"({"nodes": {}, "edges": 1})", "missing_field") == "'edges' must be an array");
  CHECK(message(R"({"nodes": {}, "edges": [["x", "__end__"]]})", "nodes_in_edges_exist") ==
        "edge source node does not exist in nodes map");
  CHECK(message(R"({"nodes": {}, "edges": [["__start__", "y"]]})", "nodes_in_edges_exist") ==
        "edge target node does not exist in nodes map");
  CHECK(message(R"({"nodes": {"a": {}}, "edges": [["a", "__end__"]]})", "unreachable_node") ==
        "node is not reachable from __start__");
  CHECK(message(R"({"nodes": {}, "edges": []})", "end_unreachable") ==
        "__end__ is not reachable from __start__");
  const std::string route = R"({"state_schema": {"k": {}}, "nodes": {"r": {"type": "route",
      "routes": {"a": "nope"}, "default": "b", "message": "{{state.zz}}"}},
      "edges": [["__start__", "r"], ["r", "__end__"]]})";
  CHECK(message(route, "undefined_state_key") ==
        "state key referenced in template is not defined in state_schema");
  CHECK(message(route, "invalid_route_target") == "route target node does not exist");
  CHECK(message(route, "missing_route_edge") ==
        "route key is declared in routes but has no matching conditional edge");
  CHECK(message(route, "invalid_route_default") ==
        "route default must reference a declared routes key");
  CHECK(message(R"({"nodes": {"s": {"type": "send", "items_key": "x", "target_node": "t"}},
      "edges": [["__start__", "s"], ["s", "__end__"]]})",
                "invalid_send_target") == "send target_node does not exist in nodes map");
}

TEST_CASE("the fatal checks come alone", "[workflow][validate]") {
  auto issues = validate(R"({"nodes": {"a": {"type": "bogus"}}, "edges": "no"})");
  REQUIRE(issues.size() == 1);
  CHECK(issues[0].key == "edges");
  CHECK_FALSE(issues[0].warning);
}

TEST_CASE("NullBoiler's mistakes are fixed", "[workflow][validate]") {
  SECTION("a route may target __end__") {
    auto issues = validate(R"({"nodes": {"r": {"type": "route", "routes": {"done": "__end__"}}},
        "edges": [["__start__", "r"], ["r:done", "__end__"]]})");
    CHECK(issues.empty());
  }
  SECTION("a loop whose exit is a conditional edge") {
    auto issues = validate(
        R"({"nodes": {"a": {}, "b": {}, "r": {"type": "route", "routes": {"again": "a", "stop": "__end__"}}},
        "edges": [["__start__", "a"], ["a", "b"], ["b", "a"], ["b", "r"], ["r:again", "a"], ["r:stop", "__end__"]]})");
    CHECK(issues.empty());
  }
  SECTION(
      "undefined state keys are checked in prompt_template, with spaces, and by top-level key") {
    auto issues = validate(R"({"state_schema": {"plan": {}}, "nodes": {"a": {"prompt_template":
        "{{state.plan.files}} {{ state.other }} {{state.plan[0]}}"}},
        "edges": [["__start__", "a"], ["a", "__end__"]]})");
    REQUIRE(issues.size() == 1);
    CHECK(issues[0].type == "undefined_state_key");
    CHECK(issues[0].key == "other");
    CHECK(issues[0].warning);
    CHECK(orch::workflow_is_valid(issues));
  }
}

TEST_CASE("issue text", "[workflow][validate]") {
  CHECK(orch::to_string({"end_unreachable", "", "", "m", false}) == "end_unreachable: m");
  CHECK(orch::to_string({"unreachable_node", "a", "", "m", false}) == "unreachable_node a: m");
  CHECK(orch::to_string({"missing_route_edge", "r", "x", "m", false}) ==
        "missing_route_edge r x: m");
  CHECK(orch::to_string({"unknown_reducer", "", "k", "m", false}) == "unknown_reducer - k: m");
  CHECK(orch::workflow_is_valid({}));
  CHECK(orch::workflow_is_valid({{"w", "", "", "m", true}}));
  CHECK_FALSE(orch::workflow_is_valid({{"w", "", "", "m", true}, {"e", "", "", "m", false}}));
}

// The keys that undefined_state_key reports for a prompt, with only `known`
// declared. (Through the public API, so the test also links against a shared
// library, whose internals are hidden.)
namespace {
std::vector<std::string> undeclared_keys(const std::string& prompt) {
  Value def = Value::object(
      {{"state_schema", Value::object({{"known", Value::object()}})},
       {"nodes", Value::object({{"a", Value::object({{"prompt_template", prompt}})}})},
       {"edges",
        Value::array({Value::array({"__start__", "a"}), Value::array({"a", "__end__"})})}});
  std::vector<std::string> keys;
  for (const auto& i : orch::validate_workflow(def)) {
    if (i.type == "undefined_state_key") keys.push_back(i.key);
  }
  return keys;
}
}  // namespace

TEST_CASE("the template scan finds state keys", "[workflow][validate]") {
  using Keys = std::vector<std::string>;
  CHECK(undeclared_keys("") == Keys{});
  CHECK(undeclared_keys("{{state.a}} {{ state.b.c }} {{state.a}} {{state.known.x}}") ==
        Keys{"a", "b"});
  CHECK(undeclared_keys("{{state.list[-1]}}{{state.x|upper}}") == Keys{"list", "x"});
  CHECK(undeclared_keys("{% if state.flag %}y{% else %}{{state.n}}{% endif %}") ==
        Keys{"flag", "n"});
  CHECK(undeclared_keys("{%if\tstate.t%}") == Keys{"t"});
  CHECK(undeclared_keys("{{input.a}} {{config.b}} {{item.c}} {{state}} {{states.x}}") == Keys{});
  CHECK(undeclared_keys("{{state.__meta.step}} {{state.__config.x}}") == Keys{});
  CHECK(undeclared_keys("{% for x in state.list %}") == Keys{});
  CHECK(undeclared_keys("{{state.a") == Keys{});
  CHECK(undeclared_keys("{ {state.a}} {state.b} }}") == Keys{});
  CHECK(undeclared_keys("{{state.}}") == Keys{});
}

TEST_CASE("graph checks ignore edges that are reported on their own", "[workflow][validate]") {
  auto issues = validate(R"({"nodes": {"a": {}, "b": {}, "c": {}, "d": {}, "e": {}},
      "edges": [["__start__", "a"], ["a", "b"], ["b", "a"], ["a", "__end__"], ["a", "c"],
                ["c", "d"], ["d", "c"], ["e", "e"], ["a", "ghost"], ["a", "__start__"],
                ["__end__", "e"]]})");
  std::vector<std::string> got;
  for (const auto& i : issues) got.push_back(i.type + " " + i.node);
  CHECK(got == std::vector<std::string>{"nodes_in_edges_exist ghost", "invalid_edge a",
                                        "invalid_edge __end__", "unreachable_node e",
                                        "unintentional_cycle c", "unintentional_cycle e"});
}

TEST_CASE("validating a typed workflow reindexes a copy", "[workflow][validate]") {
  orch::Workflow wf;
  orch::Node a;
  a.name = "a";
  wf.nodes.push_back(a);
  wf.edges.push_back({"__start__", "a", std::nullopt});
  wf.edges.push_back({"a", "__end__", std::nullopt});
  // No reindex(): the lookups are empty, validation must not be fooled.
  CHECK(orch::validate_workflow(wf).empty());
  CHECK(wf.node_index("a") == -1);
}
