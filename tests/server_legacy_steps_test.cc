// SPDX-License-Identifier: MIT
//
// Legacy `POST /runs` step arrays converted to graph definitions: the edges
// and joins they make, and every error of NullBoiler's validation.
#include <string>

#include "catch.h"
#include "legacy_steps.h"
#include "orch/workflow.h"

using orch::Value;

namespace {

Value convert(const std::string& json) {
  auto request = orch::parse_json(json);
  REQUIRE(request.ok());
  auto def = orch::server::legacy_steps_to_workflow(*request);
  INFO(json);
  REQUIRE(def.ok());
  return *def;
}

std::string error_of(const std::string& json) {
  auto request = orch::parse_json(json);
  REQUIRE(request.ok());
  auto def = orch::server::legacy_steps_to_workflow(*request);
  INFO(json);
  REQUIRE_FALSE(def.ok());
  CHECK(def.status().code() == orch::StatusCode::kInvalidArgument);
  return def.status().message();
}

std::vector<std::string> edge_list(const Value& def) {
  std::vector<std::string> out;
  for (const Value& e : def["edges"].as_array())
    out.push_back(e.at(0)->as_string() + "->" + e.at(1)->as_string());
  return out;
}

}  // namespace

TEST_CASE("a DAG of steps becomes a graph with joins", "[legacy]") {
  Value def = convert(R"({"steps": [
      {"id": "fetch", "type": "task", "prompt_template": "Fetch {{input.url}}", "worker_tags": ["web"],
       "retry": {"max_attempts": 3}, "timeout_ms": 5000, "extra": "kept out"},
      {"id": "summarize", "depends_on": ["fetch"], "prompt_template": "Sum {{steps.fetch.output}}"},
      {"id": "translate", "depends_on": ["fetch"], "prompt_template": "T {{ steps.fetch.output }}"},
      {"id": "publish", "depends_on": ["summarize", "translate"],
       "prompt_template": "{% if steps.summarize.output %}{{steps.summarize.output}}{% else %}-{% endif %} {{steps.nope.output}}"}],
    "input": {"url": "u"}})");
  CHECK(edge_list(def) == std::vector<std::string>{"__start__->fetch", "fetch->summarize",
                                                   "fetch->translate", "summarize->publish",
                                                   "translate->publish", "publish->__end__"});
  const Value& fetch = def["nodes"]["fetch"];
  CHECK(fetch["type"].as_string() == "task");
  CHECK(fetch["output_key"].as_string() == "fetch");
  CHECK(fetch["worker_tags"].at(0)->as_string() == "web");
  CHECK(fetch["retry"]["max_attempts"].as_int() == 3);
  CHECK(fetch["timeout_ms"].as_int() == 5000);
  CHECK(fetch.find("extra") == nullptr);
  CHECK(fetch["prompt_template"].as_string() == "Fetch {{input.url}}");
  CHECK(def["nodes"]["summarize"]["prompt_template"].as_string() == "Sum {{state.fetch}}");
  CHECK(def["nodes"]["translate"]["prompt_template"].as_string() == "T {{state.fetch}}");
  CHECK(def["nodes"]["publish"]["prompt_template"].as_string() ==
        "{% if state.summarize %}{{state.summarize}}{% else %}-{% endif %} {{steps.nope.output}}");
  CHECK(def["state_schema"].size() == 4);
  CHECK(def["state_schema"]["publish"]["reducer"].as_string() == "last_value");

  // The result is a valid workflow that parses to the same edges.
  CHECK(orch::validate_workflow(def).empty());
  auto wf = orch::parse_workflow(def);
  REQUIRE(wf.ok());
  CHECK((*wf)->find_node("publish")->task.output_key == "publish");
  CHECK((*wf)->find_node("fetch")->task.retry.max_attempts == 3);
}

TEST_CASE("independent steps each run from start to end", "[legacy]") {
  Value def = convert(R"({"steps": [{"id": "a"}, {"id": "b", "type": "agent", "max_turns": 2}]})");
  CHECK(edge_list(def) ==
        std::vector<std::string>{"__start__->a", "__start__->b", "a->__end__", "b->__end__"});
  CHECK(def["nodes"]["b"]["type"].as_string() == "agent");
  CHECK(def["nodes"]["b"]["max_turns"].as_int() == 2);
  CHECK(orch::workflow_is_valid(orch::validate_workflow(def)));
}

TEST_CASE("strategies chain or leave steps independent, reduce joins them all", "[legacy]") {
  Value chain =
      convert(R"({"strategy": "chain", "steps": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})");
  CHECK(edge_list(chain) == std::vector<std::string>{"__start__->a", "a->b", "b->c", "c->__end__"});
  CHECK(edge_list(convert(R"({"strategy": "sequential", "steps": [{"id": "a"}, {"id": "b"}]})")) ==
        std::vector<std::string>{"__start__->a", "a->b", "b->__end__"});

  Value fan = convert(R"({"strategy": "parallel", "reduce": {"prompt_template": "merge"},
                          "steps": [{"id": "a"}, {"id": "b"}]})");
  CHECK(edge_list(fan) == std::vector<std::string>{"__start__->a", "__start__->b", "a->__reduce",
                                                   "b->__reduce", "__reduce->__end__"});
  CHECK(fan["nodes"]["__reduce"]["prompt_template"].as_string() == "merge");
  CHECK(fan["nodes"]["__reduce"]["type"].as_string() == "task");
  Value named =
      convert(R"({"strategy": "independent", "reduce": {"id": "join"}, "steps": [{"id": "a"}]})");
  CHECK(edge_list(named) == std::vector<std::string>{"__start__->a", "a->join", "join->__end__"});
}

TEST_CASE("legacy request errors, in NullBoiler's order and words", "[legacy]") {
  CHECK(error_of("[]") == "body must be a JSON object");
  CHECK(error_of("{}") == "missing required field: steps");
  CHECK(error_of(R"({"steps": {}})") == "steps must be an array");
  CHECK(error_of(R"({"steps": []})") == "steps array must not be empty");
  CHECK(error_of(R"({"strategy": "swarm", "steps": [{"id": "a"}]})") == "unknown strategy");
  CHECK(error_of(R"({"strategy": 1, "steps": [{"id": "a"}]})") == "unknown strategy");
  CHECK(error_of(
            R"({"strategy": "chain", "steps": [{"id": "b"}, {"id": "a", "depends_on": ["b"]}]})") ==
        "cannot use depends_on with strategy");
  CHECK(error_of(R"({"strategy": "chain", "steps": [3]})") == "steps items must be objects");
  CHECK(error_of(R"({"strategy": "chain", "steps": []})") == "steps array must not be empty");
  CHECK(error_of(R"({"steps": [3]})") == "each step must be an object");
  CHECK(error_of(R"({"steps": [{"type": "task"}]})") == "each step must have string field 'id'");
  CHECK(error_of(R"({"steps": [{"id": 1}]})") == "each step must have string field 'id'");
  CHECK(error_of(R"({"steps": [{"id": ""}]})") == "step id must not be empty");
  CHECK(error_of(R"({"steps": [{"id": "a"}, {"id": "a"}]})") == "duplicate step id");
  CHECK(error_of(R"({"steps": [{"id": "a", "depends_on": "b"}]})") ==
        "depends_on must be an array");
  CHECK(error_of(R"({"steps": [{"id": "a", "depends_on": [1]}]})") ==
        "depends_on items must be strings");
  CHECK(error_of(R"({"steps": [{"id": "a"}, {"id": "b", "depends_on": ["a", "a"]}]})") ==
        "depends_on contains duplicate step id");
  CHECK(error_of(R"({"steps": [{"id": "a", "depends_on": ["zz"]}]})") ==
        "depends_on references unknown step id");
  CHECK(error_of(R"({"steps": [{"id": "a", "retry": 3}]})") == "retry must be an object");
  CHECK(error_of(R"({"steps": [{"id": "a", "retry": {"max_attempts": 0}}]})") ==
        "retry.max_attempts must be a positive integer");
  CHECK(error_of(R"({"steps": [{"id": "a", "retry": {"max_attempts": 2.5}}]})") ==
        "retry.max_attempts must be a positive integer");
  CHECK(error_of(R"({"steps": [{"id": "a", "timeout_ms": 0}]})") ==
        "timeout_ms must be a positive integer");
  CHECK(error_of(R"({"steps": [{"id": "a", "timeout_ms": "5s"}]})") ==
        "timeout_ms must be a positive integer");
  // First failure wins: the id problems of every step come before dependency problems.
  CHECK(error_of(R"({"steps": [{"id": "a", "depends_on": ["zz"]}, {"id": "a"}]})") ==
        "duplicate step id");
}

TEST_CASE("legacy requests a graph cannot run are rejected", "[legacy]") {
  CHECK(error_of(
            R"({"steps": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}]})") ==
        "depends_on contains a cycle");
  CHECK(error_of(R"({"steps": [{"id": "a", "depends_on": ["a"]}]})") ==
        "depends_on contains a cycle");
  CHECK(error_of(R"({"steps": [{"id": "a:b"}]})") == "step id must not contain ':'");
  CHECK(error_of(R"({"steps": [{"id": "__end__"}]})") ==
        "step id must not be __start__ or __end__");
  CHECK(error_of(R"({"strategy": "chain", "reduce": 5, "steps": [{"id": "a"}]})") ==
        "reduce must be an object");
  CHECK(error_of(
            R"({"strategy": "chain", "steps": [{"strategy": "chain", "steps": [{"id": "x"}]}]})") ==
        "nested strategies are not supported");
}

TEST_CASE("null optional step fields count as absent", "[legacy]") {
  Value def = convert(R"({"strategy": null, "steps": [{"id": "a", "depends_on": null, "retry": null,
                                                        "timeout_ms": null, "prompt_template": null}]})");
  CHECK(edge_list(def) == std::vector<std::string>{"__start__->a", "a->__end__"});
  CHECK(def["nodes"]["a"].find("prompt_template") == nullptr);
}

namespace {

// The prompt of step "b" after conversion, for a two-step chain a -> b.
std::string rewritten(const std::string& prompt) {
  Value request = Value::object(
      {{"steps", Value::array({Value::object({{"id", "a"}}),
                               Value::object({{"id", "b"},
                                              {"depends_on", Value::array({"a"})},
                                              {"prompt_template", prompt}})})}});
  auto def = orch::server::legacy_steps_to_workflow(request);
  REQUIRE(def.ok());
  return (*def)["nodes"]["b"]["prompt_template"].as_string();
}

std::string repeat(const std::string& piece, size_t bytes) {
  std::string out;
  out.reserve(bytes + piece.size());
  while (out.size() < bytes) out += piece;
  return out;
}

}  // namespace

TEST_CASE("prompt rewriting keeps every other tag and stray delimiter", "[legacy]") {
  CHECK(rewritten("") == "");
  CHECK(rewritten("plain") == "plain");
  CHECK(rewritten("{{steps.a.output}}") == "{{state.a}}");
  CHECK(rewritten("x{{ \tsteps.a.output\n }}y") == "x{{state.a}}y");
  CHECK(rewritten("{%if steps.a.output%}") == "{% if state.a %}");
  CHECK(rewritten("{%   if    steps.a.output   %}") == "{% if state.a %}");
  CHECK(rewritten("{% if\tsteps.a.output %}") == "{% if\tsteps.a.output %}");  // "if " only
  CHECK(rewritten("{% steps.a.output %}") == "{% steps.a.output %}");
  CHECK(rewritten("{{steps.b.output}} {{steps.zz.output}}") ==
        "{{state.b}} {{steps.zz.output}}");  // zz is no step of this request
  CHECK(rewritten("{{steps..output}} {{steps.output}}") == "{{steps..output}} {{steps.output}}");
  CHECK(rewritten("{ {{steps.a.output}} }") == "{ {{state.a}} }");
  CHECK(rewritten("{{{steps.a.output}}") == "{{{steps.a.output}}");  // "{steps.a.output" is no id
  CHECK(rewritten("{{steps.a.output}}}}") == "{{state.a}}}}");
  CHECK(rewritten("{{steps.a.output") == "{{steps.a.output");
  CHECK(rewritten("{%{{steps.a.output}}") == "{%{{state.a}}");
  CHECK(rewritten("{{ {%if steps.a.output%} }}{%if steps.a.output%}") ==
        "{{ {%if steps.a.output%} }}{% if state.a %}");
  CHECK(rewritten("}}{{steps.a.output}}{{") == "}}{{state.a}}{{");
}

TEST_CASE("prompt rewriting is linear in the prompt's length", "[legacy]") {
  // Each of these used to rescan the rest of the text from every '{': a
  // megabyte of them took seconds. Now each is one pass.
  constexpr size_t kMiB = size_t{1} << 20;
  for (const char* piece : {"{", "{{", "{%", "}}{{", "%}{%", "{{steps.a.output", "{ "}) {
    INFO(piece);
    std::string text = repeat(piece, kMiB);
    CHECK(rewritten(text) == text);
  }
  std::string many = repeat("{{steps.a.output}}", kMiB);
  std::string want = repeat("{{state.a}}", many.size() / 18 * 11);
  CHECK(rewritten(many) == want);
  std::string conditions = repeat("{% if steps.a.output %}", kMiB);
  CHECK(rewritten(conditions) == repeat("{% if state.a %}", conditions.size() / 23 * 16));
}
