// SPDX-License-Identifier: MIT
//
// Validation details the corpus does not show: NullBoiler's exact messages,
// the issue text format, the template scan and the graph facts.
#include "catch.h"
#include "orch/workflow.h"
#include "workflow/workflow_internal.h"

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

TEST_CASE("a send target that is not a task, agent or subgraph node is a validation error", "[workflow][validate]") {
  // Found when the workflow is checked, not when a run reaches the send node.
  auto issues = validate(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "w"},
      "w": {"type": "transform", "updates": {"a": 1}}},
    "edges": [["__start__","fan"],["fan","__end__"]]})");
  const ValidationIssue* i = find(issues, "invalid_send_target_type");
  REQUIRE(i != nullptr);
  CHECK_FALSE(i->warning);
  CHECK(i->message.find("must be a task, agent or subgraph node") != std::string::npos);
  CHECK(find(validate(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "w"},
      "w": {"type": "task", "prompt_template": "{{item}}"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})"), "invalid_send_target_type") == nullptr);
  CHECK(find(validate(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "w"},
      "w": {"type": "subgraph", "workflow_id": "child", "output_key": "out"}},
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

namespace {

// A chain __start__ -> n0 -> ... -> n(count-1) -> __end__.
Value chain(int count) {
  Value nodes = Value::object();
  Value edges = Value::array();
  std::string previous(orch::kStartNode);
  for (int i = 0; i < count; ++i) {
    std::string name = "n" + std::to_string(i);
    nodes.set(name, Value::object());
    edges.push_back(Value::array({previous, name}));
    previous = name;
  }
  edges.push_back(Value::array({previous, std::string(orch::kEndNode)}));
  return Value::object({{"nodes", nodes}, {"edges", edges}});
}

}  // namespace

TEST_CASE("workflow size caps come first and alone", "[workflow][validate][limits]") {
  orch::WorkflowLimits defaults;
  CHECK(defaults.max_nodes == 10000);
  CHECK(defaults.max_edges == 50000);

  SECTION("nodes") {
    CHECK(orch::workflow_is_valid(orch::validate_workflow(chain(10000))));
    CHECK(orch::parse_workflow(chain(10000)).ok());
    Value big = chain(10001);
    big.set("interrupt_before", Value::array({"ghost"}));  // not reported: the cap comes first
    auto issues = orch::validate_workflow(big);
    REQUIRE(issues.size() == 1);
    CHECK(issues[0].type == "too_many_nodes");
    CHECK(issues[0].key == "nodes");
    CHECK(issues[0].message == "workflow has 10001 nodes; at most 10000 are allowed");
    auto wf = orch::parse_workflow(big);
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().code() == orch::StatusCode::kInvalidArgument);
    CHECK(wf.status().message() == issues[0].message);
    // The caps are options.
    orch::WorkflowLimits roomy;
    roomy.max_nodes = 20000;
    CHECK(orch::parse_workflow(big, roomy).ok());
    CHECK(orch::validate_workflow(big, roomy).size() == 1);  // only the ghost breakpoint
    CHECK(orch::validate_workflow_json(big.to_json())[0].type == "too_many_nodes");
    CHECK(orch::parse_workflow_json(big.to_json(), roomy).ok());
    // 0 is no cap, as for the engine's limits.
    orch::WorkflowLimits none;
    none.max_nodes = 0;
    none.max_edges = 0;
    CHECK(orch::parse_workflow(big, none).ok());
  }
  SECTION("edges") {
    Value def = chain(3);  // 4 edges
    orch::WorkflowLimits tight;
    tight.max_edges = 4;
    CHECK(orch::validate_workflow(def, tight).empty());
    def.mutable_object()["edges"].push_back(Value::array({"n0", "n2"}));
    auto issues = orch::validate_workflow(def, tight);
    REQUIRE(issues.size() == 1);
    CHECK(issues[0].type == "too_many_edges");
    CHECK(issues[0].key == "edges");
    CHECK(issues[0].message ==
          "workflow has 5 edges (route targets included); at most 4 are allowed");
    CHECK_FALSE(orch::parse_workflow(def, tight).ok());
  }
  SECTION("route targets count as edges") {
    auto def = orch::parse_json(R"({"nodes": {"r": {"type": "route",
        "routes": {"a": "__end__", "b": "__end__"}}},
      "edges": [["__start__", "r"], ["r:a", "__end__"], ["r:b", "__end__"]]})");
    REQUIRE(def.ok());
    orch::WorkflowLimits tight;
    tight.max_edges = 5;
    CHECK(orch::validate_workflow(*def, tight).empty());
    tight.max_edges = 4;
    CHECK(orch::validate_workflow(*def, tight)[0].type == "too_many_edges");
    // `routes` of a node that is not a route node is no edge.
    def->mutable_object()["nodes"]["r"].set("type", "task");
    CHECK(orch::validate_workflow(*def, tight)[0].type != "too_many_edges");
  }
  SECTION("typed workflows, and the builder") {
    auto wf = orch::parse_workflow(chain(5));
    REQUIRE(wf.ok());
    orch::WorkflowLimits tight;
    tight.max_nodes = 4;
    auto issues = orch::validate_workflow(**wf, tight);
    REQUIRE(issues.size() == 1);
    CHECK(issues[0].type == "too_many_nodes");
    orch::WorkflowBuilder b;
    b.add_edge(orch::kStartNode, "n0");
    for (int i = 0; i <= 10000; ++i) {
      b.add_node(orch::transform_node("n" + std::to_string(i), Value::object()));
      if (i > 0) b.add_edge("n" + std::to_string(i - 1), "n" + std::to_string(i));
    }
    b.add_edge("n10000", orch::kEndNode);
    auto built = b.build();
    REQUIRE_FALSE(built.ok());
    CHECK(built.status().message().find("too_many_nodes") != std::string::npos);
  }
}

TEST_CASE("a breakpoint naming no node is an error", "[workflow][validate]") {
  auto issues = validate(R"({"interrupt_before": ["ghost"], "interrupt_after": ["a", "spook"],
      "nodes": {"a": {}}, "edges": [["__start__", "a"], ["a", "__end__"]]})");
  REQUIRE(issues.size() == 2);
  CHECK(orch::to_string(issues[0]) ==
        "unknown_interrupt_node ghost interrupt_before: interrupt_before names a node that does "
        "not exist, so it would never pause");
  CHECK_FALSE(issues[0].warning);
  CHECK(issues[1].node == "spook");
  CHECK(issues[1].key == "interrupt_after");
  CHECK_FALSE(orch::workflow_is_valid(issues));
}

TEST_CASE("many routes and edges validate in linear time", "[workflow][validate][limits]") {
  // One route node with 20 000 values, all with their conditional edges: the
  // route check used to compare every route with every edge.
  Value routes = Value::object();
  Value edges = Value::array({Value::array({"__start__", "r"})});
  for (int i = 0; i < 20000; ++i) {
    std::string value = "v" + std::to_string(i);
    routes.set(value, i % 2 == 0 ? "a" : "__end__");
    edges.push_back(Value::array({"r:" + value, i % 2 == 0 ? "a" : "__end__"}));
  }
  edges.push_back(Value::array({"a", "__end__"}));
  Value def = Value::object(
      {{"nodes", Value::object({{"r", Value::object({{"type", "route"}, {"routes", routes}})},
                                {"a", Value::object()}})},
       {"edges", edges}});
  CHECK(validate(def.to_json()).empty());
  // One missing edge is still found.
  def.mutable_object()["nodes"]["r"]["routes"].set("extra", "a");
  auto issues = validate(def.to_json());
  REQUIRE(issues.size() == 1);
  CHECK(issues[0].type == "missing_route_edge");
  CHECK(issues[0].key == "extra");
}

TEST_CASE("the template scan is linear in the text", "[workflow][validate][limits]") {
  constexpr size_t kMiB = size_t{1} << 20;
  for (const char* piece : {"{", "{{", "{%", "}}{{", "%}{%", "{{state.a", "{{state.a}}"}) {
    INFO(piece);
    std::string text;
    while (text.size() < kMiB) text += piece;
    auto keys = orch::workflow_internal::referenced_state_keys(text);
    CHECK(keys.size() <= 1);
  }
  std::string many;
  for (int i = 0; many.size() < kMiB; ++i) many += "{{state.k" + std::to_string(i) + "}}";
  auto keys = orch::workflow_internal::referenced_state_keys(many);
  CHECK(keys.size() > 50000);
  CHECK(keys[12345] == "k12345");
}
