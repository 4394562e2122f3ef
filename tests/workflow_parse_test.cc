// SPDX-License-Identifier: MIT
//
// parse_workflow: NullBoiler's coercions and defaults, our clamps, and inputs
// that must never crash the reader (or the validator and Mermaid writer that
// share it).
#include <string>

#include "catch.h"
#include "orch/workflow.h"

using orch::Array;
using orch::NodeType;
using orch::Object;
using orch::ReducerKind;
using orch::Value;

namespace {

std::shared_ptr<const orch::Workflow> parse(const std::string& json) {
  auto wf = orch::parse_workflow_json(json);
  INFO(json);
  REQUIRE(wf.ok());
  return *wf;
}

// A one-node workflow whose node is `node_json`.
std::shared_ptr<const orch::Workflow> parse_node(const std::string& node_json) {
  return parse(R"({"nodes": {"n": )" + node_json +
               R"(}, "edges": [["__start__", "n"], ["n", "__end__"]]})");
}

}  // namespace

TEST_CASE("names of node types and reducers round-trip", "[workflow][parse]") {
  for (auto t : {NodeType::kTask, NodeType::kAgent, NodeType::kRoute, NodeType::kInterrupt,
                 NodeType::kSend, NodeType::kTransform, NodeType::kSubgraph}) {
    CHECK(orch::node_type_from_name(orch::node_type_name(t)) == t);
  }
  CHECK(orch::node_type_name(NodeType::kSubgraph) == "subgraph");
  CHECK_FALSE(orch::node_type_from_name("Task").has_value());
  for (auto r :
       {ReducerKind::kLastValue, ReducerKind::kAppend, ReducerKind::kMerge, ReducerKind::kAdd,
        ReducerKind::kMin, ReducerKind::kMax, ReducerKind::kAddMessages}) {
    CHECK(orch::reducer_from_name(orch::reducer_name(r)) == r);
  }
  CHECK(orch::reducer_name(ReducerKind::kAddMessages) == "add_messages");
  CHECK_FALSE(orch::reducer_from_name("concat").has_value());
}

TEST_CASE("defaults of a bare definition", "[workflow][parse]") {
  auto wf = parse_node("{}");
  CHECK(wf->version == 1);
  CHECK(wf->id.empty());
  CHECK(wf->defaults == Value::object());
  CHECK_FALSE(wf->recursion_limit.has_value());
  CHECK_FALSE(wf->durability.has_value());
  REQUIRE(wf->nodes.size() == 1);
  const orch::Node& n = wf->nodes[0];
  CHECK(n.type == NodeType::kTask);
  CHECK(n.unknown_type.empty());
  CHECK_FALSE(n.defer);
  CHECK_FALSE(n.task.prompt_template.has_value());
  CHECK(n.task.retry.max_attempts == 1);
  CHECK(n.task.retry.initial_interval_ms == 500);
  CHECK(n.task.retry.backoff_factor == 2.0);
  CHECK(n.task.retry.max_interval_ms == 30000);
  CHECK(n.task.retry.jitter == 0.1);
  CHECK(n.task.max_turns == 1);
  CHECK_FALSE(n.task.timeout_ms.has_value());
  CHECK(wf->definition["nodes"]["n"] == Value::object());
}

TEST_CASE("top-level keys", "[workflow][parse]") {
  auto wf = parse(R"({"id": "w1", "name": "My flow", "version": 4, "defaults": {"model": "m"},
    "recursion_limit": 25, "durability": "exit",
    "interrupt_before": ["a", 1, "b"], "interrupt_after": ["c"],
    "nodes": {"a": {}, "b": {}, "c": {}}, "edges": []})");
  CHECK(wf->id == "w1");
  CHECK(wf->name == "My flow");
  CHECK(wf->version == 4);
  CHECK(wf->defaults["model"].as_string() == "m");
  CHECK(wf->recursion_limit == 25);
  CHECK(wf->durability == "exit");
  CHECK(wf->interrupt_before == std::vector<std::string>{"a", "b"});
  CHECK(wf->interrupt_after == std::vector<std::string>{"c"});

  auto bad = parse(R"({"version": 2.0, "recursion_limit": -1, "durability": "fsync",
    "defaults": "x", "id": 7, "nodes": {}, "edges": []})");
  CHECK(bad->version == 1);  // NullBoiler: not an integer -> 1
  CHECK_FALSE(bad->recursion_limit.has_value());
  CHECK_FALSE(bad->durability.has_value());
  CHECK(bad->defaults == Value::object());
  CHECK(bad->id == "7");
}

TEST_CASE("state_schema, its alias and reducers", "[workflow][parse]") {
  auto wf = parse(R"({"state_schema": {
      "a": {"type": "string"}, "b": {"type": "array", "reducer": "append", "ephemeral": true},
      "c": {"reducer": "add_messages"}, "d": {"reducer": "sum"}, "e": {"reducer": 3},
      "f": {"ephemeral": "yes"}, "g": "junk"},
    "schema": {"ignored": {}}, "nodes": {}, "edges": []})");
  REQUIRE(wf->state_schema.size() == 7);
  CHECK(wf->state_schema[0].name == "a");
  CHECK(wf->state_schema[0].type == "string");
  CHECK(wf->state_schema[0].reducer == ReducerKind::kLastValue);
  CHECK(wf->state_schema[1].reducer == ReducerKind::kAppend);
  CHECK(wf->state_schema[1].ephemeral);
  CHECK(wf->state_schema[2].reducer == ReducerKind::kAddMessages);
  CHECK(wf->state_schema[3].reducer == ReducerKind::kLastValue);
  CHECK(wf->state_schema[3].unknown_reducer == "sum");
  CHECK(wf->state_schema[4].unknown_reducer == "3");
  CHECK_FALSE(wf->state_schema[5].ephemeral);
  CHECK(wf->state_schema[6].reducer == ReducerKind::kLastValue);
  REQUIRE(wf->find_state_key("b") != nullptr);
  CHECK(wf->find_state_key("b")->ephemeral);
  CHECK(wf->find_state_key("ignored") == nullptr);

  auto alias = parse(R"({"schema": {"x": {"reducer": "max"}}, "nodes": {}, "edges": []})");
  REQUIRE(alias->state_schema.size() == 1);
  CHECK(alias->find_state_key("x")->reducer == ReducerKind::kMax);

  // A state_schema of the wrong type does not hide the alias.
  auto fallback = parse(R"({"state_schema": 5, "schema": {"y": {}}, "nodes": {}, "edges": []})");
  CHECK(fallback->find_state_key("y") != nullptr);
}

TEST_CASE("node field accessor rule", "[workflow][parse]") {
  auto wf = parse_node(
      R"({"output_key": 5, "prompt_template": {"a": [1, true]}, "worker_tags": ["x", 2, "y"]})");
  const orch::Node& n = wf->nodes[0];
  CHECK(n.task.output_key == "5");
  CHECK(n.task.prompt_template == R"({"a":[1,true]})");
  CHECK(n.task.worker_tags == std::vector<std::string>{"x", "y"});

  // null reads as absent, not as the text "null".
  auto nulls = parse_node(R"({"type": null, "prompt_template": null, "output_key": null})");
  CHECK(nulls->nodes[0].type == NodeType::kTask);
  CHECK_FALSE(nulls->nodes[0].task.prompt_template.has_value());
  CHECK_FALSE(nulls->nodes[0].task.output_key.has_value());

  auto numeric_type = parse_node(R"({"type": 1})");
  CHECK(numeric_type->nodes[0].type == NodeType::kTask);
  CHECK(numeric_type->nodes[0].unknown_type == "1");

  auto unknown = parse_node(R"({"type": "llm", "prompt_template": "p"})");
  CHECK(unknown->nodes[0].unknown_type == "llm");
  CHECK(unknown->nodes[0].task.prompt_template == "p");

  auto empty_type = parse_node(R"({"type": ""})");
  CHECK_FALSE(empty_type->nodes[0].unknown_type.empty());
}

TEST_CASE("defer is only a literal true", "[workflow][parse]") {
  CHECK(parse_node(R"({"defer": true})")->nodes[0].defer);
  CHECK_FALSE(parse_node(R"({"defer": "true"})")->nodes[0].defer);
  CHECK_FALSE(parse_node(R"({"defer": 1})")->nodes[0].defer);
  CHECK_FALSE(parse_node(R"({"defer": false})")->nodes[0].defer);
}

TEST_CASE("task fields", "[workflow][parse]") {
  auto wf = parse_node(R"({"type": "task", "prompt_template": "Do {{state.x}}",
    "output_key": "out", "output_mapping": {"a": "result.a", "b": 7, "c": "state.c"},
    "cache": {"ttl_ms": 60000}, "timeout_ms": 1500, "max_turns": 5, "continuation_prompt": "c"})");
  const orch::TaskConfig& t = wf->nodes[0].task;
  CHECK(t.prompt_template == "Do {{state.x}}");
  CHECK(t.output_key == "out");
  REQUIRE(t.output_mapping.size() == 2);
  CHECK(t.output_mapping[0] == std::make_pair(std::string("a"), std::string("result.a")));
  CHECK(t.output_mapping[1] == std::make_pair(std::string("c"), std::string("state.c")));
  CHECK(t.cache_ttl_ms == 60000);
  CHECK(t.timeout_ms == 1500);
  // Multi-turn keys belong to agents only.
  CHECK(t.max_turns == 1);
  CHECK_FALSE(t.continuation_prompt.has_value());

  auto bad = parse_node(R"({"cache": {"ttl_ms": "1h"}, "timeout_ms": 0, "output_mapping": [1]})");
  CHECK_FALSE(bad->nodes[0].task.cache_ttl_ms.has_value());
  CHECK_FALSE(bad->nodes[0].task.timeout_ms.has_value());
  CHECK(bad->nodes[0].task.output_mapping.empty());
  CHECK(parse_node(R"({"cache": {"ttl_ms": -5}})")->nodes[0].task.cache_ttl_ms == 0);
}

TEST_CASE("agent fields and the max_turns clamp", "[workflow][parse]") {
  auto wf = parse_node(R"({"type": "agent", "max_turns": 4, "continuation_prompt": "more",
    "turn_timeout_ms": 9000})");
  const orch::Node& n = wf->nodes[0];
  CHECK(n.type == NodeType::kAgent);
  CHECK(n.task.max_turns == 4);
  CHECK(n.task.continuation_prompt == "more");
  CHECK(n.task.turn_timeout_ms == 9000);
  CHECK(parse_node(R"({"type": "agent", "max_turns": 0})")->nodes[0].task.max_turns == 1);
  CHECK(parse_node(R"({"type": "agent", "max_turns": -7})")->nodes[0].task.max_turns == 1);
  CHECK(parse_node(R"({"type": "agent", "max_turns": 1000})")->nodes[0].task.max_turns == 100);
  CHECK(parse_node(R"({"type": "agent", "max_turns": 3.0})")->nodes[0].task.max_turns == 1);
  CHECK_FALSE(parse_node(R"({"type": "agent", "turn_timeout_ms": -1})")
                  ->nodes[0]
                  .task.turn_timeout_ms.has_value());
}

TEST_CASE("retry policy clamps", "[workflow][parse]") {
  auto retry = [](const std::string& json) {
    return parse_node(R"({"retry": )" + json + "}")->nodes[0].task.retry;
  };
  auto r = retry(R"({"max_attempts": 3, "initial_interval_ms": 100, "backoff_factor": 3,
                     "max_interval_ms": 900, "jitter": 0.5})");
  CHECK(r.max_attempts == 3);
  CHECK(r.initial_interval_ms == 100);
  CHECK(r.backoff_factor == 3.0);
  CHECK(r.max_interval_ms == 900);
  CHECK(r.jitter == 0.5);

  CHECK(retry(R"({"max_attempts": 0})").max_attempts == 1);
  CHECK(retry(R"({"max_attempts": -4})").max_attempts == 1);
  CHECK(retry(R"({"max_attempts": 101})").max_attempts == 100);
  CHECK(retry(R"({"max_attempts": "3"})").max_attempts == 1);
  CHECK(retry(R"({"initial_interval_ms": -5})").initial_interval_ms == 0);
  CHECK(retry(R"({"max_interval_ms": -5})").max_interval_ms == 0);
  // NullBoiler: non-integer ms values fall back to the defaults.
  CHECK(retry(R"({"initial_interval_ms": 1000.0})").initial_interval_ms == 500);
  CHECK(retry(R"({"max_interval_ms": 1.5})").max_interval_ms == 30000);
  CHECK(retry(R"({"backoff_factor": 1.5})").backoff_factor == 1.5);
  CHECK(retry(R"({"backoff_factor": -1})").backoff_factor == 2.0);
  CHECK(retry(R"({"jitter": 0})").jitter == 0.0);
  CHECK(retry(R"({"jitter": -0.5})").jitter == 0.0);
  CHECK(retry(R"({"jitter": 3})").jitter == 1.0);
  CHECK(retry(R"({"jitter": "lots"})").jitter == 0.1);
  CHECK(retry("5").max_attempts == 1);
}

TEST_CASE("route fields", "[workflow][parse]") {
  auto wf = parse_node(R"({"type": "route", "input": "state.kind",
    "routes": {"b": "x", "a": "y", "n": 5, "z": null}, "default": "a"})");
  const orch::RouteConfig& r = wf->nodes[0].route;
  CHECK(r.input == "state.kind");
  REQUIRE(r.routes.size() == 4);
  CHECK(r.routes[0] == std::make_pair(std::string("b"), std::string("x")));  // JSON order
  CHECK(r.routes[1].first == "a");
  CHECK(r.routes[2].second == "5");
  CHECK(r.routes[3].second.empty());
  CHECK(r.default_route == "a");
  CHECK(parse_node(R"({"type": "route"})")->nodes[0].route.input == "state.route_input");
  CHECK(parse_node(R"({"type": "route", "default": true})")->nodes[0].route.default_route ==
        "true");
}

TEST_CASE("send fields and the items_from alias", "[workflow][parse]") {
  auto wf = parse_node(R"({"type": "send", "items_from": "state.files", "target_node": "t",
    "max_concurrency": 3, "on_item_error": "null"})");
  const orch::SendConfig& s = wf->nodes[0].send;
  CHECK(s.items_key == "state.files");
  CHECK(s.target_node == "t");
  CHECK(s.output_key == "send_results");
  CHECK(s.max_concurrency == 3);
  CHECK(s.null_on_item_error);

  auto both = parse_node(R"({"type": "send", "items_key": "state.a", "items_from": "state.b",
    "output_key": "res", "on_item_error": "fail", "max_concurrency": 0})");
  CHECK(both->nodes[0].send.items_key == "state.a");
  CHECK(both->nodes[0].send.output_key == "res");
  CHECK_FALSE(both->nodes[0].send.null_on_item_error);
  CHECK_FALSE(both->nodes[0].send.max_concurrency.has_value());
}

TEST_CASE("transform updates as an object or a JSON string", "[workflow][parse]") {
  auto obj = parse_node(
      R"({"type": "transform", "updates": {"a": 1, "b": {"__overwrite": true, "value": 2}}})");
  CHECK(obj->nodes[0].transform.updates["a"].as_int() == 1);
  CHECK(obj->nodes[0].transform.updates["b"]["__overwrite"].as_bool());
  auto str = parse_node(R"({"type": "transform", "updates": "{\"a\": [1, 2]}"})");
  CHECK(str->nodes[0].transform.updates["a"].size() == 2);
  auto none = parse_node(R"({"type": "transform"})");
  CHECK(none->nodes[0].transform.updates == Value::object());
  CHECK(none->nodes[0].transform.store_updates.is_null());
  auto bad = parse_node(R"({"type": "transform", "updates": "{oops"})");
  CHECK(bad->nodes[0].transform.updates == Value::object());

  auto store = parse_node(R"({"type": "transform",
    "store_updates": {"namespace": "n", "key": "k", "value": "state.x"}})");
  REQUIRE(store->nodes[0].transform.store_updates.is_array());
  CHECK(store->nodes[0].transform.store_updates.size() == 1);
  auto store_text = parse_node(R"({"type": "transform",
    "store_updates": "[{\"namespace\": \"n\", \"key\": \"k\", \"value\": 1}]"})");
  CHECK(store_text->nodes[0].transform.store_updates.size() == 1);
}

TEST_CASE("subgraph and interrupt fields", "[workflow][parse]") {
  auto sub = parse_node(R"({"type": "subgraph", "workflow_id": "child",
    "input_mapping": {"q": "state.question", "bad": 1}})");
  CHECK(sub->nodes[0].subgraph.workflow_id == "child");
  REQUIRE(sub->nodes[0].subgraph.input_mapping.size() == 1);
  CHECK(sub->nodes[0].subgraph.input_mapping[0].second == "state.question");
  CHECK(sub->nodes[0].subgraph.output_key == "output");
  auto intr = parse_node(R"({"type": "interrupt", "message": "Approve?"})");
  CHECK(intr->nodes[0].type == NodeType::kInterrupt);
  CHECK(intr->nodes[0].interrupt.message == "Approve?");
}

TEST_CASE("edges: conditions split at the first colon, malformed edges skipped",
          "[workflow][parse]") {
  auto wf = parse(R"({"nodes": {"r": {"type": "route"}, "a": {}},
    "edges": [["__start__", "r"], ["r:http://x:1", "a"], ["a"], [1, "a"], "x", ["a", "__end__", 9]]})");
  REQUIRE(wf->edges.size() == 3);
  CHECK(wf->edges[1].source == "r");
  CHECK(wf->edges[1].condition == "http://x:1");
  CHECK(wf->edges[1].target == "a");
  CHECK_FALSE(wf->edges[0].condition.has_value());
  CHECK(wf->edges[2].target == "__end__");
}

TEST_CASE("lookups by name", "[workflow][parse]") {
  auto wf = parse(R"({"nodes": {"x": {}, "y": {"type": "route"}}, "edges": []})");
  CHECK(wf->node_index("y") == 1);
  CHECK(wf->node_index("z") == -1);
  REQUIRE(wf->find_node("y") != nullptr);
  CHECK(wf->find_node("y")->type == NodeType::kRoute);
  CHECK(wf->find_node("__start__") == nullptr);
}

TEST_CASE("only a document that cannot be a workflow fails to parse", "[workflow][parse]") {
  auto message = [](const std::string& json) {
    auto wf = orch::parse_workflow_json(json);
    REQUIRE_FALSE(wf.ok());
    CHECK(wf.status().code() == orch::StatusCode::kInvalidArgument);
    return wf.status().message();
  };
  CHECK(message("[]") == "workflow must be a JSON object");
  CHECK(message(R"({"edges": []})") == "workflow must have a 'nodes' object");
  CHECK(message(R"({"nodes": [], "edges": []})") == "'nodes' must be an object");
  CHECK(message(R"({"nodes": {}})") == "workflow must have an 'edges' array");
  CHECK(message(R"({"nodes": {}, "edges": {}})") == "'edges' must be an array");
  CHECK(message(R"({"nodes": )").rfind("failed to parse workflow JSON", 0) == 0);
  // Everything else parses; validation reports it.
  CHECK(orch::parse_workflow_json(R"({"nodes": {"a": 5, "b": {"type": "?"}}, "edges": [7]})").ok());
}

TEST_CASE("malformed input never crashes", "[workflow][parse]") {
  // Everything the reader, the validator and the Mermaid writer do with a
  // definition, which must all survive it.
  auto exercise = [](const Value& def) {
    auto wf = orch::parse_workflow(def);
    auto issues = orch::validate_workflow(def);
    std::string mermaid = orch::workflow_to_mermaid(def);
    CHECK(mermaid.rfind("graph TD\n", 0) == 0);
    if (wf.ok()) {
      Value out = orch::workflow_to_definition(**wf);
      CHECK(orch::parse_workflow(out).ok());
      orch::validate_workflow(**wf);
    } else {
      CHECK_FALSE(orch::workflow_is_valid(issues));
    }
  };

  SECTION("every prefix of a valid document") {
    std::string text = R"({"state_schema": {"a": {"type": "array", "reducer": "append"}},
      "nodes": {"r": {"type": "route", "input": "state.a", "routes": {"x": "t"}, "default": "x"},
                "t": {"type": "agent", "prompt_template": "{{state.a}}", "retry": {"max_attempts": 2}},
                "s": {"type": "send", "items_key": "state.a", "target_node": "t"}},
      "edges": [["__start__", "r"], ["r:x", "t"], ["t", "s"], ["s", "__end__"]]})";
    for (size_t n = 0; n < text.size(); ++n) {
      std::string prefix = text.substr(0, n);
      auto issues = orch::validate_workflow_json(prefix);
      REQUIRE(issues.size() == 1);
      CHECK(issues[0].type == "parse_error");
      CHECK_FALSE(orch::parse_workflow_json(prefix).ok());
    }
    CHECK(orch::workflow_is_valid(orch::validate_workflow_json(text)));
  }

  SECTION("every field with every JSON type") {
    const Value samples[] = {Value(),          Value(true),
                             Value(0),         Value(-1),
                             Value(1.5),       Value(""),
                             Value("state.x"), Value("{\"a\": 1}"),
                             Value::array(),   Value::array({1, "a", Value()}),
                             Value::object(),  Value::object({{"a", Value::object({{"b", 1}})}})};
    const char* node_fields[] = {"type",
                                 "defer",
                                 "prompt_template",
                                 "worker_tags",
                                 "output_key",
                                 "output_mapping",
                                 "retry",
                                 "cache",
                                 "timeout_ms",
                                 "max_turns",
                                 "continuation_prompt",
                                 "turn_timeout_ms",
                                 "input",
                                 "routes",
                                 "default",
                                 "message",
                                 "items_key",
                                 "items_from",
                                 "target_node",
                                 "max_concurrency",
                                 "on_item_error",
                                 "updates",
                                 "store_updates",
                                 "workflow_id",
                                 "input_mapping",
                                 "prompt"};
    const char* types[] = {"task", "agent", "route", "interrupt", "send", "transform", "subgraph"};
    for (const char* type : types) {
      for (const char* field : node_fields) {
        for (const Value& v : samples) {
          Value node = Value::object({{"type", type}});
          node.set(field, v);
          if (std::string(field) == "retry" || std::string(field) == "cache") {
            // Also inside the nested objects.
            node.set(field, Value::object({{"max_attempts", v},
                                           {"initial_interval_ms", v},
                                           {"backoff_factor", v},
                                           {"max_interval_ms", v},
                                           {"jitter", v},
                                           {"ttl_ms", v}}));
          }
          exercise(Value::object(
              {{"state_schema",
                Value::object(
                    {{"k", Value::object({{"reducer", v}, {"type", v}, {"ephemeral", v}})}})},
               {"nodes", Value::object({{"n", node}})},
               {"edges", Value::array({Value::array({"__start__", "n"}),
                                       Value::array({"n", "__end__"})})}}));
        }
      }
    }
    const char* top_fields[] = {"id",
                                "name",
                                "version",
                                "defaults",
                                "recursion_limit",
                                "durability",
                                "interrupt_before",
                                "interrupt_after",
                                "state_schema",
                                "schema",
                                "nodes",
                                "edges"};
    for (const char* field : top_fields) {
      for (const Value& v : samples) {
        Value def = Value::object({{"nodes", Value::object({{"n", Value::object()}})},
                                   {"edges", Value::array({Value::array({"__start__", "n"})})}});
        def.set(field, v);
        exercise(def);
        exercise(Value::object({{"nodes", Value::object({{"n", v}})},
                                {"edges", Value::array({v, Value::array({v, v})})}}));
      }
      exercise(Value(field));
    }
  }

  SECTION("huge names and values") {
    std::string huge(1 << 20, 'n');
    Value def = Value::object(
        {{"nodes",
          Value::object({{huge, Value::object({{"prompt_template", "{{state." + huge + "}}"}})}})},
         {"state_schema", Value::object({{huge + "x", Value::object()}})},
         {"edges", Value::array({Value::array({"__start__", huge}),
                                 Value::array({huge + ":" + huge, huge})})}});
    exercise(def);
    auto issues = orch::validate_workflow(def);
    CHECK_FALSE(orch::workflow_is_valid(issues));
  }

  SECTION("deep nesting") {
    std::string text = R"({"nodes": {"t": {"type": "transform", "updates": {"a": )";
    for (int i = 0; i < 400; ++i) text += "[";
    for (int i = 0; i < 400; ++i) text += "]";
    text += R"(}, "prompt_template": )";
    for (int i = 0; i < 400; ++i) text += R"({"x": )";
    text += "1";
    for (int i = 0; i < 400; ++i) text += "}";
    text += R"(}}, "edges": [["__start__", "t"], ["t", "__end__"]]})";
    auto wf = orch::parse_workflow_json(text);
    REQUIRE(wf.ok());
    CHECK(orch::workflow_is_valid(orch::validate_workflow_json(text)));
    exercise((*wf)->definition);
    // Too deep for the JSON parser: an error, not a crash.
    std::string too_deep(100000, '[');
    CHECK(orch::validate_workflow_json(too_deep)[0].type == "parse_error");
  }

  SECTION("a long chain of nodes and a large cycle") {
    // The graph walks are iterative; a recursive one would overflow here.
    const int n = 100000;
    Object nodes;
    Array edges;
    edges.push_back(Value::array({"__start__", "n0"}));
    for (int i = 0; i < n; ++i) {
      nodes.set("n" + std::to_string(i), Value::object());
      if (i + 1 < n)
        edges.push_back(Value::array({"n" + std::to_string(i), "n" + std::to_string(i + 1)}));
    }
    edges.push_back(Value::array({"n" + std::to_string(n - 1), "n0"}));
    Value def = Value::object({{"nodes", Value(nodes)}, {"edges", Value(edges)}});
    // Beyond the default caps; raised to reach the graph walks.
    CHECK(orch::validate_workflow(def)[0].type == "too_many_nodes");
    orch::WorkflowLimits limits;
    limits.max_nodes = n;
    limits.max_edges = n + 1;
    auto issues = orch::validate_workflow(def, limits);
    REQUIRE(issues.size() == 2);
    CHECK(issues[0].type == "end_unreachable");
    CHECK(issues[1].type == "unintentional_cycle");
    CHECK(issues[1].node == "n0");
  }
}

TEST_CASE("durability names convert both ways", "[workflow]") {
  for (orch::Durability d : {orch::Durability::kSync, orch::Durability::kFull, orch::Durability::kExit}) {
    CHECK(orch::durability_from_name(orch::durability_name(d)) == d);
  }
  CHECK_FALSE(orch::durability_from_name("SYNC").has_value());
  CHECK_FALSE(orch::durability_from_name("").has_value());
}
