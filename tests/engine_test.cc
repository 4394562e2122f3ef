// SPDX-License-Identifier: MIT
// Engine behaviour: scheduling, control flow and failure handling (issue: graph engine).
#include <algorithm>
#include <atomic>
#include <map>
#include <fstream>
#include <filesystem>
#include <condition_variable>
#include <chrono>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/engine.h"
#include "orch/id.h"
#include "orch/thread_guard.h"
#include "orch/sqlite_store.h"
#include "support/engine_fixture.h"

using namespace std::chrono_literals;
using orch::NodeCall;
using orch::NodeOutput;
using orch::Result;
using orch::RunStatus;
using orch::Value;
using orch::testing::json;
using orch::testing::make_engine;
using orch::testing::make_workflow;
using orch::testing::run_to_end;

namespace {

// A node function that appends its name to `trace`.
orch::NodeFunction tracer(const std::string& name) {
  return [name](const NodeCall&) -> Result<NodeOutput> {
    return NodeOutput(Value::object({{"trace", Value::array({name})}}));
  };
}

const char* kTraceSchema = R"("state_schema": {"trace": {"type": "array", "reducer": "append"},
                                               "count": {"type": "number", "reducer": "add"}})";

std::vector<std::string> trace_of(const orch::RunRecord& r) {
  std::vector<std::string> out;
  for (const Value& v : r.state["trace"].as_array()) out.push_back(v.as_string());
  return out;
}

}  // namespace

TEST_CASE("diamond with unequal branches runs its join once, after both", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}, "c1": {}, "c2": {}, "join": {}},
    "edges": [["__start__","a"],["a","b"],["a","c1"],["c1","c2"],["b","join"],["c2","join"],["join","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}, {"c1", tracer("c1")}, {"c2", tracer("c2")},
                           {"join", tracer("join")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  auto trace = trace_of(r);
  CHECK(std::count(trace.begin(), trace.end(), "join") == 1);
  CHECK(trace.back() == "join");
  CHECK(trace.size() == 5);
}

TEST_CASE("a route-driven review/fix loop iterates as the route says, then exits", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"write": {}, "review": {}, "check": {"type": "route", "input": "state.count",
              "routes": {"3": "__end__"}, "default": "again"}, "fix": {}},
    "edges": [["__start__","write"],["write","review"],["review","check"],
              ["check:again","fix"],["fix","review"],["check:3","__end__"]]})",
                          {{"write", tracer("write")},
                           {"review", [](const NodeCall&) -> Result<NodeOutput> {
                              return NodeOutput(json(R"({"trace":["review"],"count":1})"));
                            }},
                           {"fix", tracer("fix")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(trace_of(r) == std::vector<std::string>{"write", "review", "fix", "review", "fix", "review"});
  CHECK(r.state["count"].as_int() == 3);
}

TEST_CASE("a prompt rendering past 1 MiB fails its node without running it", "[engine][limits]") {
  // A 155 KB request once rendered a 500 MB prompt: one input value named
  // many times. The render stops at the cap and the node fails.
  std::atomic<int> calls{0};
  std::string prompt;
  for (int i = 0; i < 8; ++i) prompt += "{{input.big}}";
  auto wf = make_workflow(R"({"nodes": {"a": {"prompt_template": ")" + prompt + R"("}},
    "edges": [["__start__","a"],["a","__end__"]]})",
                          {{"a", [&calls](const NodeCall&) -> Result<NodeOutput> {
                              ++calls;
                              return NodeOutput(Value::object());
                            }}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, Value::object({{"big", std::string(150 * 1024, 'x')}}));
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("template render failed: rendered template exceeds 1048576 bytes") !=
        std::string::npos);
  CHECK(calls == 0);
}

TEST_CASE("exceeding the recursion limit fails the run with a clear error", "[engine]") {
  auto wf = make_workflow(R"({"nodes": {"a": {}, "b": {}},
    "edges": [["__start__","a"],["a","b"],["b","a"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, Value::object(), json(R"({"recursion_limit": 7})"));
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("recursion limit of 7") != std::string::npos);
  // Exactly `limit` supersteps ran: a, b, a, b, a, b, a.
  CHECK(engine->store()->list_checkpoints(r.id)->size() == 8);
}

TEST_CASE("checkpoint versions count from 0 at __init__ and __fork__, one more per checkpoint, as in NullBoiler", "[engine][compat]") {
  auto wf = make_workflow(R"({"nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  auto cps = engine->store()->list_checkpoints(r.id);
  REQUIRE(cps.ok());
  REQUIRE(cps->size() == 4);
  const std::vector<std::string> steps = {"__init__", "a", "b", "__end__"};
  for (size_t i = 0; i < cps->size(); ++i) {
    CHECK((*cps)[i].version == static_cast<int64_t>(i));
    CHECK((*cps)[i].step_id == steps[i]);
  }
  // A fork starts again at 0, its __fork__ naming the source checkpoint as its parent.
  auto forked = engine->fork_run((*cps)[1].id, Value());
  REQUIRE(forked.ok());
  auto ended = engine->wait(*forked, 10s);
  REQUIRE(ended.ok());
  CHECK(ended->status == RunStatus::kCompleted);
  auto fork_cps = engine->store()->list_checkpoints(*forked);
  REQUIRE(fork_cps.ok());
  REQUIRE(fork_cps->size() == 3);  // __fork__, b, __end__
  CHECK((*fork_cps)[0].step_id == "__fork__");
  CHECK((*fork_cps)[0].version == 0);
  CHECK((*fork_cps)[0].parent_id == (*cps)[1].id);
  CHECK((*fork_cps)[2].version == 2);
}

TEST_CASE("100 000 supersteps of in-process nodes run in constant stack depth", "[engine][hardening]") {
  // A transform and a route in a loop: both finish inside the superstep that
  // launched them, which once nested the next superstep's call on the stack
  // (SIGSEGV at a few thousand supersteps).
  auto wf = make_workflow(R"({"state_schema": {"count": {"type": "number", "reducer": "add"}},
    "nodes": {"inc": {"type": "transform", "updates": {"count": 1}},
              "check": {"type": "route", "input": "state.count", "routes": {"50000": "__end__", "again": "inc"}, "default": "again"}},
    "edges": [["__start__","inc"],["inc","check"],["check:again","inc"],["check:50000","__end__"]]})");
  auto engine = make_engine();
  auto run = engine->start_run(wf, [] {
    orch::RunOptions o;
    o.config = json(R"({"recursion_limit": 100001, "durability": "exit"})");
    return o;
  }());
  REQUIRE(run.ok());
  auto r = engine->wait(*run, std::chrono::minutes(5));
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kCompleted);
  CHECK(r->error.empty());
  CHECK(r->state["count"].as_int() == 50000);
}

TEST_CASE("a graph where nothing can become ready fails naming the stuck nodes", "[engine]") {
  // "join" also waits for "c", which sits on a cycle nothing enters.
  auto wf = make_workflow(R"({"nodes": {"a": {}, "c": {}, "d": {}, "join": {}},
    "edges": [["__start__","a"],["a","join"],["c","join"],["c","d"],["d","c"],["join","__end__"]]})",
                          {{"a", tracer("a")}, {"c", tracer("c")}, {"d", tracer("d")}, {"join", tracer("join")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kFailed);
  CHECK(r.error.find("stuck") != std::string::npos);
  CHECK(r.error.find("join") != std::string::npos);
}

TEST_CASE("a run whose route chose no edge fails naming the route", "[engine]") {
  // Nothing waits afterwards (no edge fired): the error names where the paths were cut.
  auto wf = make_workflow(R"({"state_schema": {"x": {}},
    "nodes": {"pick": {"type": "route", "input": "state.x", "routes": {"yes": "a"}}, "a": {}},
    "edges": [["__start__","pick"],["pick:yes","a"],["a","__end__"]]})",
                          {{"a", tracer("a")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, json(R"({"x":"no"})"));
  REQUIRE(r.status == RunStatus::kFailed);
  INFO(r.error);
  CHECK(r.error.find("stuck") != std::string::npos);
  CHECK(r.error.find("no edge led on from: pick") != std::string::npos);
}

TEST_CASE("a join with a dead route branch runs after its live predecessor", "[engine]") {
  auto wf = make_workflow(R"({"state_schema": {"trace": {"type": "array", "reducer": "append"}, "x": {}},
    "nodes": {"a": {},
      "r": {"type": "route", "input": "state.x", "routes": {"yes": "join", "no": "other"}}, "join": {}, "other": {}},
    "edges": [["__start__","a"],["__start__","r"],["a","join"],["r:yes","join"],["r:no","other"],
              ["join","__end__"],["other","__end__"]]})",
                          {{"a", tracer("a")}, {"join", tracer("join")}, {"other", tracer("other")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, json(R"({"x":"no"})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  // join (from a) and other (from r) share superstep 2; definition order applies.
  CHECK(trace_of(r) == std::vector<std::string>{"a", "join", "other"});
}

TEST_CASE("parallel nodes of a superstep run concurrently", "[engine]") {
  auto slow = [](const NodeCall&) -> Result<NodeOutput> {
    std::this_thread::sleep_for(200ms);
    return NodeOutput(Value::object());
  };
  auto wf = make_workflow(R"({"nodes": {"a": {}, "b": {}, "c": {}},
    "edges": [["__start__","a"],["__start__","b"],["__start__","c"],["a","__end__"],["b","__end__"],["c","__end__"]]})",
                          {{"a", slow}, {"b", slow}, {"c", slow}});
  auto engine = make_engine();
  auto start = std::chrono::steady_clock::now();
  auto r = run_to_end(*engine, wf);
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(r.status == RunStatus::kCompleted);
  CHECK(elapsed < 550ms);
}

TEST_CASE("parallel updates apply in definition order whatever the finish order", "[engine]") {
  auto random_delay = [](const std::string& name) {
    return [name](const NodeCall&) -> Result<NodeOutput> {
      thread_local std::mt19937 rng{std::random_device{}()};
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 8));
      return NodeOutput(Value::object({{"trace", Value::array({name})}, {"last", name}}));
    };
  };
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"p1": {}, "p2": {}, "p3": {}, "p4": {}},
    "edges": [["__start__","p1"],["__start__","p2"],["__start__","p3"],["__start__","p4"],
              ["p1","__end__"],["p2","__end__"],["p3","__end__"],["p4","__end__"]]})",
                          {{"p1", random_delay("p1")}, {"p2", random_delay("p2")}, {"p3", random_delay("p3")},
                           {"p4", random_delay("p4")}});
  auto engine = make_engine();
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(*engine->start_run(wf, {}));
  for (const auto& id : ids) {
    auto r = engine->wait(id, 10s);
    REQUIRE(r.ok());
    REQUIRE(r->status == RunStatus::kCompleted);
    CHECK(r->state.to_json() == R"({"trace":["p1","p2","p3","p4"],"count":0,"last":"p4"})");
  }
}

TEST_CASE("goto replaces static edges and survives interrupt_after", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "interrupt_after": ["decide"],
    "nodes": {"decide": {}, "normal": {}, "special": {}},
    "edges": [["__start__","decide"],["decide","normal"],["normal","__end__"],["special","__end__"]]})",
                          {{"decide", [](const NodeCall&) -> Result<NodeOutput> {
                              NodeOutput out(json(R"({"trace":["decide"]})"));
                              out.goto_nodes = {"special"};
                              return out;
                            }},
                           {"normal", tracer("normal")},
                           {"special", tracer("special")}});
  auto engine = make_engine();
  auto id = *engine->start_run(wf, {});
  auto paused = engine->wait(id, 10s);
  REQUIRE(paused->status == RunStatus::kInterrupted);
  REQUIRE(engine->resume_run(id, Value()).ok());
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(trace_of(*r) == std::vector<std::string>{"decide", "special"});
}

namespace {
// The graph of the goto-after-skip report: r0 routes on state.v, so with
// v = "x" nodes c and d are skipped before a's goto reaches them.
std::shared_ptr<const orch::Workflow> goto_after_skip(std::vector<std::string> targets, bool interrupt_after_a) {
  std::string json_text = std::string(R"({"state_schema": {"trace": {"type": "array", "reducer": "append"},
                                          "v": {"type": "string"}}, )") +
                          (interrupt_after_a ? R"("interrupt_after": ["a"], )" : "") + R"(
    "nodes": {"r0": {"type": "route", "input": "state.v", "routes": {"x": "a", "y": "c", "z": "d"}},
              "a": {}, "b": {}, "c": {}, "d": {}},
    "edges": [["__start__","r0"],["r0:x","a"],["r0:y","c"],["r0:z","d"],
              ["a","b"],["b","__end__"],["c","__end__"],["d","__end__"]]})";
  return make_workflow(json_text, {{"a", [targets](const NodeCall&) -> Result<NodeOutput> {
                                     NodeOutput out(json(R"({"trace":["a"]})"));
                                     out.goto_nodes = targets;
                                     return out;
                                   }},
                                   {"b", tracer("b")},
                                   {"c", tracer("c")},
                                   {"d", tracer("d")}});
}
}  // namespace

TEST_CASE("goto to a node skipped earlier runs it and completes the run", "[engine][goto]") {
  auto engine = make_engine();
  SECTION("one target") {
    auto r = run_to_end(*engine, goto_after_skip({"c"}, false), json(R"({"v": "x"})"));
    INFO(r.error);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(trace_of(r) == std::vector<std::string>{"a", "c"});
  }
  SECTION("a list of targets") {
    auto r = run_to_end(*engine, goto_after_skip({"c", "d"}, false), json(R"({"v": "x"})"));
    INFO(r.error);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(trace_of(r) == std::vector<std::string>{"a", "c", "d"});
  }
  SECTION("across an interrupt_after on the node that chose the goto") {
    auto id = *engine->start_run(goto_after_skip({"c"}, true), [] {
      orch::RunOptions o;
      o.input = json(R"({"v": "x"})");
      return o;
    }());
    REQUIRE(engine->wait(id, 10s)->status == RunStatus::kInterrupted);
    REQUIRE(engine->resume_run(id, Value()).ok());
    auto r = engine->wait(id, 10s);
    INFO(r->error);
    REQUIRE(r->status == RunStatus::kCompleted);
    CHECK(trace_of(*r) == std::vector<std::string>{"a", "c"});
  }
}

TEST_CASE("goto to a skipped node feeds a join whose other branch was skipped", "[engine][goto]") {
  // c -> j <- b: both c and b were skipped by r0 before a's goto reaches c.
  auto wf = make_workflow(std::string(R"({"state_schema": {"trace": {"type": "array", "reducer": "append"},
                                                   "v": {"type": "string"}},
    "nodes": {"r0": {"type": "route", "input": "state.v", "routes": {"x": "a", "y": "b", "z": "c"}},
              "a": {}, "b": {}, "c": {}, "j": {}},
    "edges": [["__start__","r0"],["r0:x","a"],["r0:y","b"],["r0:z","c"],
              ["a","__end__"],["b","j"],["c","j"],["j","__end__"]]})"),
                          {{"a", [](const NodeCall&) -> Result<NodeOutput> {
                              NodeOutput out(json(R"({"trace":["a"]})"));
                              out.goto_nodes = {"c"};
                              return out;
                            }},
                           {"b", tracer("b")}, {"c", tracer("c")}, {"j", tracer("j")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, json(R"({"v": "x"})"));
  INFO(r.error);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(trace_of(r) == std::vector<std::string>{"a", "c", "j"});
}

TEST_CASE("property: random DAGs with routes and gotos complete or fail with a reason, never stuck",
          "[engine][goto][property]") {
  // Random layered DAGs: every node can reach __end__, routes pick among
  // their successors at random, and task nodes sometimes goto a random node.
  // Since every path leads to __end__, a run must complete; "stuck" (or a
  // timeout) is the defect this guards against.
  std::mt19937 rng(20261206);
  auto engine = make_engine();
  for (int round = 0; round < 300; ++round) {
    const int n = 3 + static_cast<int>(rng() % 10);
    std::vector<std::vector<int>> succ(n);
    std::vector<bool> is_route(n);
    for (int i = 1; i < n; ++i) succ[rng() % static_cast<unsigned>(i)].push_back(i);  // all reachable
    for (int i = 0; i < n; ++i) {
      is_route[i] = rng() % 3 == 0;
      int fan = succ[i].empty() ? 1 : static_cast<int>(rng() % 3);
      for (int k = 0; k < fan; ++k) {
        int t = i + 1 + static_cast<int>(rng() % static_cast<unsigned>(n - i));  // n means __end__
        if (std::find(succ[i].begin(), succ[i].end(), t) == succ[i].end()) succ[i].push_back(t);
      }
    }
    auto name = [n](int i) { return i == n ? std::string("__end__") : "n" + std::to_string(i); };
    std::string nodes, edges = R"(["__start__","n0"])";
    std::map<std::string, orch::NodeFunction> fns;
    Value input = Value::object();
    std::string gotos;
    // Input keys outside the schema do not reach the state: declare the routes'.
    std::string schema = R"("trace": {"type": "array", "reducer": "append"})";
    for (int i = 0; i < n; ++i) {
      if (!nodes.empty()) nodes += ",";
      if (is_route[i]) {
        std::string routes;
        for (size_t k = 0; k < succ[i].size(); ++k) {
          routes += (k ? "," : "") + std::string("\"") + std::to_string(k) + "\": \"" + name(succ[i][k]) + "\"";
          edges += ",[\"" + name(i) + ":" + std::to_string(k) + "\",\"" + name(succ[i][k]) + "\"]";
        }
        nodes += "\"" + name(i) + "\": {\"type\": \"route\", \"input\": \"state.r" + std::to_string(i) +
                 "\", \"routes\": {" + routes + "}}";
        input.set("r" + std::to_string(i), std::to_string(rng() % succ[i].size()));
        schema += ", \"r" + std::to_string(i) + "\": {\"type\": \"string\"}";
      } else {
        nodes += "\"" + name(i) + "\": {}";
        for (int t : succ[i]) edges += ",[\"" + name(i) + "\",\"" + name(t) + "\"]";
        std::vector<std::string> go;
        if (rng() % 4 == 0) {
          int t = i + 1 + static_cast<int>(rng() % static_cast<unsigned>(n - i));  // forward: a DAG
          go.push_back(name(t));
          gotos += name(i) + " -> goto " + name(t) + "; ";
        }
        fns[name(i)] = [go, nm = name(i)](const NodeCall&) -> Result<NodeOutput> {
          NodeOutput out(Value::object({{"trace", Value::array({nm})}}));
          out.goto_nodes = go;
          return out;
        };
      }
    }
    std::string text = "{\"state_schema\": {" + schema + "}, \"nodes\": {" + nodes + "}, \"edges\": [" + edges + "]}";
    INFO(text);
    INFO(input.to_json());
    INFO(gotos);
    // Nodes no path reaches fail validation; such a graph is not a workflow.
    auto parsed = orch::parse_workflow_json(text);
    REQUIRE(parsed.ok());
    auto wf = make_workflow(text, fns);
    auto r = run_to_end(*engine, wf, input);
    INFO(r.error);
    CHECK(r.status == RunStatus::kCompleted);
  }
}

TEST_CASE("send over 100 items keeps item order, null where an item failed", "[engine]") {
  auto wf = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work", "output_key": "results",
              "on_item_error": "null"},
      "work": {"type": "task"}},
    "edges": [["__start__","fan"],["fan","__end__"]],
    "state_schema": {"items": {"type": "array"}, "results": {"type": "array", "reducer": "append"}}})",
                          {{"work", [](const NodeCall& call) -> Result<NodeOutput> {
                              int64_t n = call.item->as_int();
                              if (n % 10 == 3) return orch::Status::internal("bad item");
                              return NodeOutput(Value::object({{"output", "item-" + std::to_string(n)}}));
                            }}});
  Value items = Value::array();
  for (int i = 0; i < 100; ++i) items.push_back(i);
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, Value::object({{"items", items}}));
  REQUIRE(r.status == RunStatus::kCompleted);
  const Value& results = r.state["results"];
  REQUIRE(results.size() == 100);
  for (int i = 0; i < 100; ++i) {
    if (i % 10 == 3) {
      CHECK(results.at(i)->is_null());
    } else {
      CHECK(results.at(i)->as_string() == "item-" + std::to_string(i));
    }
  }
}

TEST_CASE("a send over max_send_items items fails naming the limit before it calls anything", "[engine][hardening]") {
  std::atomic<int> calls{0};
  auto wf = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work", "output_key": "results"},
      "work": {"type": "task"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})",
                          {{"work", [&calls](const NodeCall&) -> Result<NodeOutput> {
                              ++calls;
                              return NodeOutput(Value::object({{"output", "ok"}}));
                            }}});
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.max_send_items = 5;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto items_of = [](int n) {
    Value items = Value::array();
    for (int i = 0; i < n; ++i) items.push_back(i);
    return Value::object({{"items", items}});
  };
  auto at_limit = run_to_end(**engine, wf, items_of(5));
  CHECK(at_limit.status == RunStatus::kCompleted);
  CHECK(calls == 5);
  auto over = run_to_end(**engine, wf, items_of(6));
  CHECK(over.status == RunStatus::kFailed);
  CHECK(over.error.find("send items at 'state.items' are 6, over the limit of 5 (max_send_items)") != std::string::npos);
  CHECK(calls == 5);
}

TEST_CASE("a failed send item fails the run unless on_item_error is null", "[engine]") {
  auto wf = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work"}, "work": {}},
    "edges": [["__start__","fan"],["fan","__end__"]]})",
                          {{"work", [](const NodeCall& call) -> Result<NodeOutput> {
                              if (call.item->as_int() == 2) return orch::Status::internal("boom");
                              return NodeOutput(Value::object());
                            }}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, json(R"({"items":[1,2,3]})"));
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("send item 1 failed: boom") != std::string::npos);
}

TEST_CASE("a deferred node runs last, after all other work", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"summary": {"defer": true}, "a": {}, "b": {}, "b2": {}},
    "edges": [["__start__","summary"],["__start__","a"],["__start__","b"],["b","b2"],
              ["a","__end__"],["b2","__end__"],["summary","__end__"]]})",
                          {{"summary", tracer("summary")}, {"a", tracer("a")}, {"b", tracer("b")},
                           {"b2", tracer("b2")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(trace_of(r).back() == "summary");
  CHECK(trace_of(r).size() == 4);
}

TEST_CASE("interrupt_before fires once, resume runs the node", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "interrupt_before": ["b"],
    "nodes": {"a": {}, "b": {}},
    "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}});
  auto engine = make_engine();
  auto id = *engine->start_run(wf, {});
  auto paused = engine->wait(id, 10s);
  REQUIRE(paused->status == RunStatus::kInterrupted);
  CHECK(trace_of(*paused) == std::vector<std::string>{"a"});
  REQUIRE(engine->resume_run(id, json(R"({"trace":["human"]})")).ok());
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(trace_of(*r) == std::vector<std::string>{"a", "human", "b"});
  CHECK(engine->resume_run(id, Value()).code() == orch::StatusCode::kFailedPrecondition);
}

TEST_CASE("interrupt node pauses, resume continues after it", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"ask": {"type": "interrupt", "message": "approve?"}, "after": {}},
    "edges": [["__start__","ask"],["ask","after"],["after","__end__"]]})",
                          {{"after", tracer("after")}});
  auto engine = make_engine();
  auto id = *engine->start_run(wf, {});
  REQUIRE(engine->wait(id, 10s)->status == RunStatus::kInterrupted);
  REQUIRE(engine->resume_run(id, json(R"({"approved": true})")).ok());
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(r->state["approved"].as_bool());
  CHECK(trace_of(*r) == std::vector<std::string>{"after"});
}

// A memory store holding workflow "child": it pauses at an interrupt node,
// then sets `output` to "from child".
static std::shared_ptr<orch::Store> store_with_pausing_child() {
  auto store = orch::new_memory_store();
  orch::WorkflowRecord child;
  child.id = "child";
  child.definition = json(R"({"nodes": {"ask": {"type": "interrupt"},
      "set": {"type": "transform", "updates": {"output": "from child"}}},
    "edges": [["__start__","ask"],["ask","set"],["set","__end__"]]})");
  REQUIRE(store->put_workflow(child, true).ok());
  return store;
}

TEST_CASE("a subgraph child that interrupts pauses its parent, resuming continues both", "[engine]") {
  auto store = store_with_pausing_child();
  auto wf = make_workflow(R"({"nodes": {"sub": {"type": "subgraph", "workflow_id": "child", "output_key": "output"}},
    "edges": [["__start__","sub"],["sub","__end__"]]})");
  auto engine = make_engine(nullptr, nullptr, store);
  auto id = *engine->start_run(wf, {});
  auto paused = engine->wait(id, 10s);
  REQUIRE(paused->status == RunStatus::kInterrupted);
  REQUIRE(engine->resume_run(id, Value()).ok());
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(r->state["output"].as_string() == "from child");
  orch::RunFilter children;
  children.parent_run_id = id;
  auto kids = store->list_runs(children);
  REQUIRE(kids->size() == 1);
  CHECK(kids->front().status == RunStatus::kCompleted);
}

TEST_CASE("a subgraph child resumed directly ends and its parent then goes on by itself", "[engine]") {
  auto store = store_with_pausing_child();
  auto wf = make_workflow(R"({"state_schema": {"output": {}, "trace": {"type": "array", "reducer": "append"}},
    "nodes": {"sub": {"type": "subgraph", "workflow_id": "child", "output_key": "output"},
              "after": {"type": "transform", "updates": {"trace": ["after"]}}},
    "edges": [["__start__","sub"],["sub","after"],["after","__end__"]]})");
  auto engine = make_engine(nullptr, nullptr, store);
  auto id = *engine->start_run(wf, {});
  REQUIRE(engine->wait(id, 10s)->status == RunStatus::kInterrupted);
  orch::RunFilter children;
  children.parent_run_id = id;
  auto kids = store->list_runs(children);
  REQUIRE(kids->size() == 1);
  REQUIRE(engine->resume_run(kids->front().id, Value()).ok());
  REQUIRE(engine->wait(kids->front().id, 10s)->status == RunStatus::kCompleted);
  // The parent hears of its child's end on an engine thread.
  auto r = engine->get_run(id);
  for (int i = 0; i < 1000 && r.ok() && r->status != RunStatus::kCompleted; ++i) {
    std::this_thread::sleep_for(10ms);
    r = engine->get_run(id);
  }
  REQUIRE(r.ok());
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(r->state["output"].as_string() == "from child");
  CHECK(trace_of(*r) == std::vector<std::string>{"after"});
  CHECK(store->get_run(id)->status == RunStatus::kCompleted);
}

TEST_CASE("a send to a subgraph node runs a child per item: results in item order, a failed child null", "[engine][send]") {
  // The child doubles its input's item; item 2 fails.
  auto child = make_workflow(R"({"id": "double", "nodes": {"work": {}}, "edges": [["__start__","work"],["work","__end__"]]})",
                             {{"work", [](const NodeCall& call) -> Result<NodeOutput> {
                                 const int64_t n = call.state["item"].as_int();
                                 if (n == 2) return orch::Status::internal("two is bad");
                                 return NodeOutput(Value::object({{"doubled", n * 2}}));
                               }}});
  auto parent = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "each", "output_key": "results",
              "on_item_error": "null", "max_concurrency": 2},
      "each": {"type": "subgraph", "workflow_id": "double", "output_key": "doubled"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})");
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.workflow_resolver = [child](const std::string& id) -> Result<std::shared_ptr<const orch::Workflow>> {
    if (id == "double") return child;
    return orch::Status::not_found("no workflow " + id);
  };
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto r = run_to_end(**engine, parent, json(R"({"items": [1, 2, 3, 5]})"));
  INFO(r.error);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["results"].to_json() == "[2,null,6,10]");
  // One child per item, each named by the item's record.
  orch::RunFilter children;
  children.parent_run_id = r.id;
  auto kids = options.store->list_runs(children);
  REQUIRE(kids.ok());
  CHECK(kids->size() == 4);
  auto steps = options.store->list_steps(r.id);
  REQUIRE(steps.ok());
  std::map<int, orch::StepRecord> items;
  for (const orch::StepRecord& s : *steps) {
    if (s.item_index >= 0) items[s.item_index] = s;
  }
  REQUIRE(items.size() == 4);
  for (const auto& [i, s] : items) {
    INFO(i);
    CHECK(s.node_name == "fan_" + std::to_string(i));
    CHECK(s.type == "subgraph");
    CHECK_FALSE(s.child_run_id.empty());
    CHECK(s.status == (i == 1 ? orch::StepStatus::kFailed : orch::StepStatus::kCompleted));
    auto kid = options.store->get_run(s.child_run_id);
    REQUIRE(kid.ok());
    CHECK(kid->input["item"].as_int() == std::vector<int>{1, 2, 3, 5}[i]);
  }
  CHECK(items[2].output.to_json() == R"({"doubled":6})");
  CHECK(items[1].error.find("two is bad") != std::string::npos);
  // Without on_item_error "null" the failed child fails the send.
  auto strict = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "each"},
      "each": {"type": "subgraph", "workflow_id": "double", "output_key": "doubled"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})");
  auto failed = run_to_end(**engine, strict, json(R"({"items": [1, 2]})"));
  CHECK(failed.status == RunStatus::kFailed);
  CHECK(failed.error.find("send item 1 failed: subgraph run") != std::string::npos);
  // A workflow that does not exist fails each item, not the process.
  auto missing = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "each", "on_item_error": "null"},
      "each": {"type": "subgraph", "workflow_id": "nope", "output_key": "x"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})");
  auto none = run_to_end(**engine, missing, json(R"({"items": [1, 2]})"));
  CHECK(none.status == RunStatus::kCompleted);
  CHECK(none.state["send_results"].to_json() == "[null,null]");
}

TEST_CASE("a send's item children that pause pause the parent, and resuming it continues them all", "[engine][send]") {
  auto store = store_with_pausing_child();
  auto wf = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "each", "output_key": "results"},
      "each": {"type": "subgraph", "workflow_id": "child", "output_key": "output"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})");
  auto engine = make_engine(nullptr, nullptr, store);
  auto id = *engine->start_run(wf, [] {
    orch::RunOptions o;
    o.input = json(R"({"items": ["a", "b", "c"]})");
    return o;
  }());
  REQUIRE(engine->wait(id, 10s)->status == RunStatus::kInterrupted);
  // Resumed once the children have all paused (the parent pauses at the first).
  orch::RunFilter children;
  children.parent_run_id = id;
  for (int i = 0; i < 500; ++i) {
    auto kids = store->list_runs(children);
    size_t paused = 0;
    for (const orch::RunRecord& k : *kids) paused += k.status == RunStatus::kInterrupted ? 1 : 0;
    if (paused == 3) break;
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(engine->resume_run(id, Value()).ok());
  // (A child's pause heard after the resume may pause the parent for a
  // moment: it goes on by itself once that child ends.)
  auto r = engine->wait(id, 10s);
  for (int i = 0; i < 500 && r.ok() && r->status == RunStatus::kInterrupted; ++i) {
    std::this_thread::sleep_for(10ms);
    r = engine->wait(id, 10s);
  }
  REQUIRE(r.ok());
  INFO(r->error);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(r->state["results"].to_json() == R"(["from child","from child","from child"])");
  auto kids = store->list_runs(children);
  REQUIRE(kids->size() == 3);
  for (const orch::RunRecord& k : *kids) CHECK(k.status == RunStatus::kCompleted);

  // Cancelling a parent its items' children paused cancels them too.
  orch::RunOptions again;
  again.input = json(R"({"items": ["d", "e"]})");
  auto second = *engine->start_run(wf, again);
  REQUIRE(engine->wait(second, 10s)->status == RunStatus::kInterrupted);
  REQUIRE(engine->cancel_run(second).ok());
  orch::RunFilter second_children;
  second_children.parent_run_id = second;
  size_t cancelled = 0;
  for (int i = 0; i < 500 && cancelled < 2; ++i) {
    cancelled = 0;
    auto listed = store->list_runs(second_children);
    REQUIRE(listed.ok());
    for (const orch::RunRecord& k : *listed) cancelled += k.status == RunStatus::kCancelled ? 1 : 0;
    if (cancelled < 2) std::this_thread::sleep_for(10ms);
  }
  CHECK(cancelled == 2);
  CHECK(store->get_run(second)->status == RunStatus::kCancelled);
}

TEST_CASE("a workflow whose subgraphs call it back starts at most max_descendant_runs runs", "[engine][hardening]") {
  // Two subgraph nodes calling their own workflow: 2^10 runs before the
  // depth limit without a cap on the family.
  auto store = orch::new_memory_store();
  orch::WorkflowRecord self;
  self.id = "self";
  self.definition = json(R"({"id": "self", "nodes": {
      "s1": {"type": "subgraph", "workflow_id": "self", "output_key": "o1"},
      "s2": {"type": "subgraph", "workflow_id": "self", "output_key": "o2"}},
    "edges": [["__start__","s1"],["__start__","s2"],["s1","__end__"],["s2","__end__"]]})");
  REQUIRE(store->put_workflow(self, true).ok());
  orch::EngineOptions options;
  options.store = store;
  options.max_descendant_runs = 20;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto id = (*engine)->start_run(*orch::parse_workflow(self.definition), {});
  REQUIRE(id.ok());
  auto r = (*engine)->wait(*id, 30s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kFailed);
  CHECK(r->error.find("max_descendant_runs") != std::string::npos);
  // Every child ends too (each failing its own node), and no more were started.
  orch::RunFilter all;
  all.limit = SIZE_MAX;
  for (int i = 0; i < 500 && (*engine)->active_runs() > 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(store->list_runs(all)->size() <= 21);
}

TEST_CASE("a superstep that would grow the state past max_state_bytes fails the run", "[engine][hardening]") {
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.max_state_bytes = 2000;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  const std::string chunk(600, 'x');
  auto wf = make_workflow(R"({"state_schema": {"log": {"type": "array", "reducer": "append"}},
    "nodes": {"a": {"type": "transform", "updates": {"log": [")" + chunk + R"("]}},
              "b": {"type": "transform", "updates": {"log": [")" + chunk + R"("]}},
              "c": {"type": "transform", "updates": {"log": [")" + chunk + R"("]}},
              "d": {"type": "transform", "updates": {"log": [")" + chunk + R"("]}}},
    "edges": [["__start__","a"],["a","b"],["b","c"],["c","d"],["d","__end__"]]})");
  auto r = run_to_end(**engine, wf);
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("max_state_bytes") != std::string::npos);
  CHECK(r.error.find("'d'") != std::string::npos);  // the fourth 600-byte entry is one too many
  CHECK(r.state["log"].size() == 3);                 // the state before it stays
}

TEST_CASE("a long breakpoint list costs one lookup per node, not a scan per superstep", "[engine][hardening]") {
  // 100 000 names in a run's config.interrupt_before: looked up once.
  auto wf = make_workflow(R"({"nodes": {"a": {"type": "transform", "updates": {"x": 1}},
                                       "b": {"type": "transform", "updates": {"y": 2}}},
    "edges": [["__start__","a"],["a","b"],["b","__end__"]]})");
  Value names = Value::array();
  for (int i = 0; i < 100000; ++i) names.push_back(i % 2 ? "a" : "b");
  auto engine = make_engine();
  auto id = engine->start_run(wf, [&] {
    orch::RunOptions o;
    o.config = Value::object({{"interrupt_before", names}});
    return o;
  }());
  REQUIRE(id.ok());
  auto paused = engine->wait(*id, 10s);
  REQUIRE(paused->status == RunStatus::kInterrupted);
  REQUIRE(engine->resume_run(*id, Value()).ok());
  REQUIRE(engine->wait(*id, 10s)->status == RunStatus::kInterrupted);  // before b
  REQUIRE(engine->resume_run(*id, Value()).ok());
  CHECK(engine->wait(*id, 10s)->status == RunStatus::kCompleted);
}

TEST_CASE("EngineOptions::max_prompt_bytes bounds a rendered prompt, and the node fails without a retry", "[engine][hardening]") {
  std::atomic<int> calls{0};
  auto workers = std::make_shared<orch::InProcessWorkers>();
  workers->add("w", {}, [&calls](const orch::WorkerRequest&) {
    ++calls;
    return orch::WorkerReply();
  });
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.dispatcher = workers;
  options.max_prompt_bytes = 100;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto wf = make_workflow(R"({"state_schema": {"text": {"type": "string"}},
    "nodes": {"t": {"prompt_template": "{{state.text}}{{state.text}}", "retry": {"max_attempts": 3}}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto r = run_to_end(**engine, wf, Value::object({{"text", std::string(60, 'x')}}));
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("max_output_bytes") != std::string::npos);
  CHECK(r.error.find("attempts") == std::string::npos);  // not retried: it would fail the same way
  CHECK(calls == 0);
}

TEST_CASE("a reply's ui_messages join state.__ui_messages with add_messages", "[engine]") {
  // NullBoiler engine §4.8; from the top level of the reply and from a JSON output text.
  std::atomic<int> calls{0};
  auto workers = std::make_shared<orch::InProcessWorkers>();
  workers->add("w", {}, [&calls](const orch::WorkerRequest&) {
    orch::WorkerReply reply;
    if (++calls == 1) {
      reply.output = R"({"answer": "one", "ui_messages": [{"id": "m1", "text": "first"}, {"id": "m2", "text": "second"}]})";
    } else {
      reply.output = "two";
      reply.envelope = Value::object({{"ui_messages", json(R"([{"id": "m1", "text": "first, edited"}, {"id": "m3", "text": "third"}])")}});
    }
    return reply;
  });
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.dispatcher = workers;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto wf = make_workflow(R"({"state_schema": {"answer": {"type": "string"}},
    "nodes": {"a": {"prompt_template": "a"}, "b": {"prompt_template": "b"}},
    "edges": [["__start__","a"],["a","b"],["b","__end__"]]})");
  auto r = run_to_end(**engine, wf);
  INFO(r.error);
  REQUIRE(r.status == RunStatus::kCompleted);
  const Value& ui = r.state["__ui_messages"];
  REQUIRE(ui.is_array());
  REQUIRE(ui.size() == 3);
  CHECK(ui.as_array()[0]["text"].as_string() == "first, edited");
  CHECK(ui.as_array()[1]["id"].as_string() == "m2");
  CHECK(ui.as_array()[2]["id"].as_string() == "m3");
}

TEST_CASE("an engine holding max_live_runs runs refuses another with ResourceExhausted", "[engine][hardening]") {
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.max_live_runs = 3;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto wf = make_workflow(R"({"nodes": {"i": {"type": "interrupt"}}, "edges": [["__start__","i"],["i","__end__"]]})");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = (*engine)->start_run(wf, {});
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  auto refused = (*engine)->start_run(wf, {});
  CHECK(refused.status().code() == orch::StatusCode::kResourceExhausted);
  CHECK(refused.status().message().find("max_live_runs") != std::string::npos);
  REQUIRE((*engine)->cancel_run(ids[0]).ok());
  bool started = false;  // once a run ends and leaves memory, there is room again
  for (int i = 0; i < 500 && !started; ++i) {
    started = (*engine)->start_run(wf, {}).ok();
    if (!started) std::this_thread::sleep_for(5ms);
  }
  CHECK(started);
}

TEST_CASE("retry: fails twice, succeeds on attempt 3, other runs go on meanwhile", "[engine]") {
  auto clock = std::make_shared<orch::ManualClock>();
  std::atomic<int> calls{0};
  auto wf = make_workflow(R"({"nodes": {"flaky": {"retry": {"max_attempts": 3, "initial_interval_ms": 1000}}},
    "edges": [["__start__","flaky"],["flaky","__end__"]]})",
                          {{"flaky", [&calls](const NodeCall& call) -> Result<NodeOutput> {
                              ++calls;
                              if (call.attempt < 3) return orch::Status::unavailable("try again");
                              return NodeOutput(Value::object({{"attempt", call.attempt}}));
                            }}});
  auto quick = make_workflow(R"({"nodes": {"q": {"type": "transform", "updates": {"done": true}}},
    "edges": [["__start__","q"],["q","__end__"]]})");
  auto engine = make_engine(nullptr, clock);
  auto id = *engine->start_run(wf, {});
  // Wait until the first attempt failed and a back-off timer is set.
  for (int i = 0; i < 500 && clock->pending_timers() < 1; ++i) std::this_thread::sleep_for(2ms);
  auto other = run_to_end(*engine, quick);
  CHECK(other.status == RunStatus::kCompleted);
  CHECK(engine->get_run(id)->status == RunStatus::kRunning);
  for (int i = 0; i < 100 && engine->get_run(id)->status == RunStatus::kRunning; ++i) {
    clock->advance(2s);
    std::this_thread::sleep_for(5ms);
  }
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(r->state["attempt"].as_int() == 3);
  CHECK(calls == 3);
}

TEST_CASE("a worker that never answers fails the attempt after timeout_ms", "[engine]") {
  auto clock = std::make_shared<orch::ManualClock>();
  struct Silent : orch::Dispatcher {
    void dispatch(const orch::WorkerRequest&, Callback) override {}  // never answers
  };
  auto wf = make_workflow(R"({"nodes": {"t": {"prompt_template": "hi", "timeout_ms": 5000}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto engine = make_engine(std::make_shared<Silent>(), clock);
  auto id = *engine->start_run(wf, {});
  for (int i = 0; i < 500 && clock->pending_timers() < 1; ++i) std::this_thread::sleep_for(2ms);
  clock->advance(4s);
  CHECK(engine->get_run(id)->status == RunStatus::kRunning);
  clock->advance(2s);
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kFailed);
  CHECK(r->error.find("timed out after 5000 ms") != std::string::npos);
}

TEST_CASE("a dispatcher or listener that throws fails the call, not the process", "[engine][hardening]") {
  struct Throwing : orch::Dispatcher {
    void dispatch(const orch::WorkerRequest&, Callback) override { throw std::runtime_error("plugin bug"); }
    void cancel(const std::string&) override { throw std::logic_error("cancel bug"); }
  };
  auto wf = make_workflow(R"({"nodes": {"t": {"prompt_template": "hi"}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto engine = make_engine(std::make_shared<Throwing>());
  const uint64_t before = orch::thread_exceptions();
  auto subscription = engine->subscribe("", [](const orch::EventRecord& e) {
    if (e.kind == "run.started") throw std::runtime_error("listener bug");
  });
  auto r = run_to_end(*engine, wf);
  engine->unsubscribe(subscription);
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("dispatcher threw") != std::string::npos);
  CHECK(orch::thread_exceptions() > before);
  // The engine goes on working.
  auto ok = run_to_end(*engine, make_workflow(R"({"nodes": {"x": {"type": "transform", "updates": {"a": 1}}},
    "edges": [["__start__","x"],["x","__end__"]]})"));
  CHECK(ok.status == RunStatus::kCompleted);
}

TEST_CASE("a cache hit skips the worker call and still checkpoints and breaks", "[engine]") {
  auto workers = std::make_shared<orch::InProcessWorkers>();
  std::atomic<int> calls{0};
  workers->add("w", {}, [&calls](const orch::WorkerRequest& req) {
    ++calls;
    orch::WorkerReply reply;
    reply.output = "answer to " + req.prompt;
    return reply;
  });
  auto wf = make_workflow(R"({"interrupt_after": ["t"],
    "nodes": {"t": {"prompt_template": "q={{input.q}}", "cache": {"ttl_ms": 60000}, "output_key": "answer"}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto engine = make_engine(workers);
  for (int round = 0; round < 2; ++round) {
    orch::RunOptions opts;
    opts.input = json(R"({"q":"x"})");
    auto id = *engine->start_run(wf, opts);
    auto paused = engine->wait(id, 10s);
    REQUIRE(paused->status == RunStatus::kInterrupted);  // the breakpoint fires on a hit too
    CHECK(paused->state["answer"].as_string() == "answer to q=x");
    REQUIRE(engine->resume_run(id, Value()).ok());
    REQUIRE(engine->wait(id, 10s)->status == RunStatus::kCompleted);
    CHECK(engine->store()->list_checkpoints(id)->size() >= 3);
  }
  CHECK(calls == 1);
}

TEST_CASE("cancel during a long call: the status stays cancelled", "[engine]") {
  std::atomic<bool> release{false};
  auto wf = make_workflow(R"({"nodes": {"long": {}},
    "edges": [["__start__","long"],["long","__end__"]]})",
                          {{"long", [&release](const NodeCall&) -> Result<NodeOutput> {
                              while (!release) std::this_thread::sleep_for(1ms);
                              return NodeOutput(Value::object({{"done", true}}));
                            }}});
  auto engine = make_engine();
  auto id = *engine->start_run(wf, {});
  std::this_thread::sleep_for(20ms);
  REQUIRE(engine->cancel_run(id).ok());
  release = true;
  std::this_thread::sleep_for(50ms);
  auto r = engine->get_run(id);
  CHECK(r->status == RunStatus::kCancelled);
  CHECK(engine->store()->get_run(id)->status == RunStatus::kCancelled);
  CHECK(engine->cancel_run(id).code() == orch::StatusCode::kFailedPrecondition);
}

TEST_CASE("one of three parallel nodes fails: run fails, retry re-runs only that node", "[engine]") {
  // b finishes after a and c (c fails): its result must still be kept for the
  // retry, although it is the last node of its superstep.
  std::atomic<int> a_calls{0}, b_calls{0}, c_calls{0};
  std::atomic<bool> c_ok{false};
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}, "c": {}},
    "edges": [["__start__","a"],["__start__","b"],["__start__","c"],["a","__end__"],["b","__end__"],["c","__end__"]]})",
                          {{"a", [&](const NodeCall&) -> Result<NodeOutput> {
                              ++a_calls;
                              return NodeOutput(Value::object({{"trace", Value::array({"a"})}}));
                            }},
                           {"b", [&](const NodeCall&) -> Result<NodeOutput> {
                              ++b_calls;
                              for (int i = 0; i < 5000 && (a_calls == 0 || c_calls == 0); ++i) {
                                std::this_thread::sleep_for(1ms);
                              }
                              std::this_thread::sleep_for(20ms);  // let a's and c's replies land first
                              return NodeOutput(Value::object({{"trace", Value::array({"b"})}}));
                            }},
                           {"c", [&](const NodeCall&) -> Result<NodeOutput> {
                              ++c_calls;
                              if (!c_ok) return orch::Status::internal("c is broken");
                              return NodeOutput(Value::object({{"trace", Value::array({"c"})}}));
                            }}});
  for (const char* store : {"memory", "sqlite"}) {
    INFO(store);
    a_calls = b_calls = c_calls = 0;
    c_ok = false;
    std::shared_ptr<orch::Store> st = orch::new_memory_store();
    if (std::string(store) == "sqlite") st = *orch::open_sqlite_store(":memory:");
    auto engine = make_engine(nullptr, nullptr, st);
    auto r = run_to_end(*engine, wf);
    REQUIRE(r.status == RunStatus::kFailed);
    CHECK(r.error.find("node 'c' failed: c is broken") != std::string::npos);
    c_ok = true;
    REQUIRE(engine->retry_run(r.id).ok());
    auto again = engine->wait(r.id, 10s);
    REQUIRE(again->status == RunStatus::kCompleted);
    CHECK(a_calls == 1);
    CHECK(b_calls == 1);
    CHECK(c_calls == 2);
    CHECK(trace_of(*again) == std::vector<std::string>{"a", "b", "c"});
  }
}

TEST_CASE("1000 concurrent runs of a 10-node workflow complete with the right state", "[engine]") {
  std::string nodes, edges = R"(["__start__","n0"])";
  std::map<std::string, orch::NodeFunction> fns;
  for (int i = 0; i < 10; ++i) {
    std::string n = "n" + std::to_string(i);
    nodes += (i ? "," : "") + std::string("\"") + n + "\": {}";
    if (i > 0) edges += R"(,["n)" + std::to_string(i - 1) + R"(","n)" + std::to_string(i) + "\"]";
    fns[n] = [](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(json(R"({"count": 1})")); };
  }
  edges += R"(,["n9","__end__"])";
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(, "nodes": {)" + nodes + "}, \"edges\": [" + edges + "]}",
                          fns);
  auto engine = make_engine();
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(*engine->start_run(wf, {}));
  for (const auto& id : ids) {
    auto r = engine->wait(id, 60s);
    REQUIRE(r.ok());
    REQUIRE(r->status == RunStatus::kCompleted);
    REQUIRE(r->state["count"].as_int() == 10);
  }
}

TEST_CASE("events carry a per-run increasing sequence", "[engine]") {
  auto wf = make_workflow(R"({"nodes": {"t": {"type": "transform", "updates": {"x": 1}}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  auto events = engine->store()->list_events(r.id, 0, 1000);
  REQUIRE(events.ok());
  REQUIRE(events->size() >= 4);
  for (size_t i = 0; i < events->size(); ++i) CHECK((*events)[i].seq == static_cast<int64_t>(i + 1));
  CHECK(events->front().kind == "run.started");
  CHECK(events->back().kind == "run.completed");
}

TEST_CASE("ephemeral keys are visible to the next superstep, then cleared", "[engine][state]") {
  std::mutex mu;
  std::vector<std::string> seen;
  auto look = [&](const std::string& name) {
    return [&, name](const NodeCall& call) -> Result<NodeOutput> {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(name + ":" + call.state["scratch"].to_json());
      return NodeOutput(Value::object());
    };
  };
  auto wf = make_workflow(R"({"state_schema": {"scratch": {"type": "string", "ephemeral": true}},
    "nodes": {"w": {"type": "transform", "updates": {"scratch": "note"}}, "r1": {}, "r2": {}},
    "edges": [["__start__","w"],["w","r1"],["r1","r2"],["r2","__end__"]]})",
                          {{"r1", look("r1")}, {"r2", look("r2")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(seen == std::vector<std::string>{"r1:\"note\"", "r2:null"});
  CHECK(r.state.find("scratch") == nullptr);
}

TEST_CASE("__meta and __config are visible to nodes", "[engine][state]") {
  Value meta;
  Value config;
  auto wf = make_workflow(R"({"defaults": {"model": "m1", "tone": "dry"},
    "nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", [](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(Value::object()); }},
                           {"b", [&](const NodeCall& call) -> Result<NodeOutput> {
                              meta = call.state["__meta"];
                              config = call.state["__config"];
                              return NodeOutput(Value::object());
                            }}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, Value::object(), json(R"({"tone": "warm", "recursion_limit": 10})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(meta["step"].as_int() == 2);  // a runs in superstep 1, b in superstep 2
  CHECK(meta["remaining_steps"].as_int() == 8);
  CHECK(meta["is_last_step"].as_bool() == false);
  CHECK(meta["run_id"].as_string() == r.id);
  CHECK(meta["node_name"].as_string() == "b");
  CHECK(meta["attempt"].as_int() == 1);
  CHECK(config["model"].as_string() == "m1");
  CHECK(config["tone"].as_string() == "warm");
  CHECK(r.state.find("__meta") == nullptr);  // never persisted
}

TEST_CASE("a node of unknown type fails the run with a clear error", "[engine]") {
  auto wf = make_workflow(R"({"nodes": {"x": {"type": "teleport"}}, "edges": [["__start__","x"],["x","__end__"]]})");
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("unknown node type 'teleport'") != std::string::npos);
}

TEST_CASE("agent multi-turn: continues until done, with fresh state each turn", "[engine]") {
  auto workers = std::make_shared<orch::InProcessWorkers>();
  std::mutex mu;
  std::vector<std::string> prompts;
  std::vector<std::string> sessions;
  workers->add("agent", {}, [&](const orch::WorkerRequest& req) {
    std::lock_guard<std::mutex> lock(mu);
    prompts.push_back(req.prompt);
    sessions.push_back(req.session_id);
    orch::WorkerReply reply;
    int turn = req.turn;
    reply.envelope = Value::object({{"state_updates", Value::object({{"turns", Value::array({turn})}})}});
    if (turn == 3) reply.envelope.set("done", true);
    reply.output = "turn " + std::to_string(turn);
    return reply;
  });
  auto wf = make_workflow(R"({"state_schema": {"turns": {"type": "array", "reducer": "append"}},
    "nodes": {"agent": {"type": "agent", "prompt_template": "start", "max_turns": 10,
                        "continuation_prompt": "continue after {{state.turns}}"}},
    "edges": [["__start__","agent"],["agent","__end__"]]})");
  auto engine = make_engine(workers);
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(prompts == std::vector<std::string>{"start", "continue after [1]", "continue after [2]"});
  CHECK(sessions[0] == sessions[2]);
  // Only the final turn's updates are applied (each turn's reply replaces the last).
  CHECK(r.state["turns"].to_json() == "[3]");
}

TEST_CASE("send respects max_concurrency", "[engine]") {
  std::atomic<int> in_flight{0}, peak{0};
  auto wf = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work", "max_concurrency": 2},
      "work": {}},
    "edges": [["__start__","fan"],["fan","__end__"]]})",
                          {{"work", [&](const NodeCall&) -> Result<NodeOutput> {
                              int now = ++in_flight;
                              int seen = peak.load();
                              while (now > seen && !peak.compare_exchange_weak(seen, now)) {
                              }
                              std::this_thread::sleep_for(5ms);
                              --in_flight;
                              return NodeOutput(Value::object());
                            }}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf, json(R"({"items":[1,2,3,4,5,6,7,8]})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(peak <= 2);
  CHECK(r.state["send_results"].size() == 8);
}

TEST_CASE("per-run interrupt_before / interrupt_after in config", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}});
  auto engine = make_engine();
  orch::RunOptions opts;
  opts.config = json(R"({"interrupt_after": ["a"]})");
  auto id = *engine->start_run(wf, opts);
  auto paused = engine->wait(id, 10s);
  REQUIRE(paused->status == RunStatus::kInterrupted);
  CHECK(trace_of(*paused) == std::vector<std::string>{"a"});
  REQUIRE(engine->resume_run(id, Value()).ok());
  CHECK(engine->wait(id, 10s)->status == RunStatus::kCompleted);
  opts.config = json(R"({"interrupt_before": ["nope"]})");
  CHECK(engine->start_run(wf, opts).status().code() == orch::StatusCode::kInvalidArgument);
}

TEST_CASE("state injection: immediately, and after a named node", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "interrupt_before": ["b"],
    "nodes": {"a": {}, "b": {}, "c": {}}, "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}, {"c", [](const NodeCall& call) -> Result<NodeOutput> {
                              return NodeOutput(Value::object({{"trace", Value::array({"c saw " + call.state["note"].get_string("-")})}}));
                            }}});
  auto engine = make_engine();
  auto id = *engine->start_run(wf, {});
  REQUIRE(engine->wait(id, 10s)->status == RunStatus::kInterrupted);
  REQUIRE(engine->inject_state(id, json(R"({"trace": ["injected"]})"), "").ok());
  CHECK(trace_of(*engine->get_run(id)) == std::vector<std::string>{"a", "injected"});
  REQUIRE(engine->inject_state(id, json(R"({"note": "after b"})"), "b").ok());
  CHECK(engine->inject_state(id, json(R"({"x": 1})"), "nope").code() == orch::StatusCode::kInvalidArgument);
  REQUIRE(engine->resume_run(id, Value()).ok());
  auto r = engine->wait(id, 10s);
  REQUIRE(r->status == RunStatus::kCompleted);
  CHECK(trace_of(*r) == std::vector<std::string>{"a", "injected", "b", "c saw after b"});
}

TEST_CASE("state injection into runs that ended gets a checkpoint of its own and keeps the status and a retry sees it", "[engine]") {
  // NullBoiler puts no status restriction on POST /runs/{id}/state: fix a
  // failed run's state, then retry it.
  auto wf = make_workflow(R"({"state_schema": {"trace": {"type": "array", "reducer": "append"}, "fixed": {}, "note": {}},
    "nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", tracer("a")}, {"b", [](const NodeCall& call) -> Result<NodeOutput> {
                              if (!call.state["fixed"].get_bool(false)) return orch::Status::internal("b needs fixed");
                              return NodeOutput(Value::object({{"trace", Value::array({"b"})}}));
                            }}});
  for (const char* store : {"memory", "sqlite"}) {
    INFO(store);
    std::shared_ptr<orch::Store> st = orch::new_memory_store();
    if (std::string(store) == "sqlite") st = *orch::open_sqlite_store(":memory:");
    auto engine = make_engine(nullptr, nullptr, st);
    auto failed = run_to_end(*engine, wf);
    REQUIRE(failed.status == RunStatus::kFailed);
    const int64_t checkpoints = failed.checkpoint_count;
    CHECK(engine->inject_state(failed.id, json(R"({"fixed": true})"), "b").code() == orch::StatusCode::kFailedPrecondition);
    REQUIRE(engine->inject_state(failed.id, json(R"({"fixed": true})"), "").ok());
    auto stored = st->get_run(failed.id);
    REQUIRE(stored.ok());
    CHECK(stored->status == RunStatus::kFailed);
    CHECK(stored->state["fixed"].get_bool(false));
    CHECK(stored->checkpoint_count == checkpoints + 1);
    CHECK(engine->get_run(failed.id)->state["fixed"].get_bool(false));
    auto latest = st->latest_checkpoint(failed.id);
    REQUIRE(latest.ok());
    CHECK(latest->step_id == "__inject__");
    CHECK(latest->state["fixed"].get_bool(false));
    REQUIRE(engine->retry_run(failed.id).ok());
    auto again = engine->wait(failed.id, 10s);
    INFO("after the retry: " << again->error);
    REQUIRE(again->status == RunStatus::kCompleted);
    CHECK(trace_of(*again) == std::vector<std::string>{"a", "b"});

    // A completed run stays completed, with the new state.
    REQUIRE(engine->inject_state(failed.id, json(R"({"note": "later"})"), "").ok());
    auto after = engine->get_run(failed.id);
    CHECK(after->status == RunStatus::kCompleted);
    CHECK(after->state["note"].get_string("") == "later");
    CHECK(st->get_run(failed.id)->state["note"].get_string("") == "later");
  }
}

TEST_CASE("fork keeps route results and goto, overrides go through reducers", "[engine]") {
  auto wf = make_workflow(R"({"state_schema": {"trace": {"type": "array", "reducer": "append"}, "kind": {}},
    "interrupt_after": ["pick"],
    "nodes": {"r": {"type": "route", "input": "state.kind", "routes": {"x": "pick", "y": "other"}},
              "pick": {}, "other": {}, "special": {}, "after": {}},
    "edges": [["__start__","r"],["r:x","pick"],["r:y","other"],["pick","after"],["other","after"],
              ["special","after"],["after","__end__"]]})",
                     {{"pick", [](const NodeCall&) -> Result<NodeOutput> {
                         NodeOutput out(Value::object({{"trace", Value::array({"pick"})}}));
                         out.goto_nodes = {"special"};
                         return out;
                       }},
                      {"other", tracer("other")}, {"special", tracer("special")}, {"after", tracer("after")}});
  auto engine = make_engine();
  orch::RunOptions opts;
  opts.input = json(R"({"kind": "x"})");
  auto id = *engine->start_run(wf, opts);
  auto paused = engine->wait(id, 10s);
  REQUIRE(paused->status == RunStatus::kInterrupted);
  auto cps = engine->store()->list_checkpoints(id);
  REQUIRE(cps.ok());
  const orch::Checkpoint& after_pick = cps->back();
  CHECK(after_pick.metadata["route_results"]["r"].as_string() == "x");
  auto fork = engine->fork_run(after_pick.id, json(R"({"trace": ["forked"]})"));
  REQUIRE(fork.ok());
  auto f = engine->wait(*fork, 10s);
  REQUIRE(f->status == RunStatus::kCompleted);
  CHECK(trace_of(*f) == std::vector<std::string>{"pick", "forked", "special", "after"});
  CHECK(f->forked_from_run_id == id);
  CHECK(f->input["kind"].as_string() == "x");
  // The original is untouched by the fork.
  CHECK(engine->get_run(id)->status == RunStatus::kInterrupted);
}

TEST_CASE("replay from an earlier checkpoint re-runs later nodes and drops later history", "[engine]") {
  std::atomic<int> b_runs{0};
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", tracer("a")}, {"b", [&](const NodeCall&) -> Result<NodeOutput> {
                              ++b_runs;
                              return NodeOutput(Value::object({{"trace", Value::array({"b"})}}));
                            }}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  auto cps = *engine->store()->list_checkpoints(r.id);
  REQUIRE(cps.size() == 4);  // __init__, a, b, __end__
  REQUIRE(engine->replay_run(r.id, cps[1].id).ok());
  auto again = engine->wait(r.id, 10s);
  REQUIRE(again->status == RunStatus::kCompleted);
  CHECK(b_runs == 2);
  CHECK(trace_of(*again) == std::vector<std::string>{"a", "b"});
  auto after = *engine->store()->list_checkpoints(r.id);
  CHECK(after.size() == 4);
  for (size_t i = 1; i < after.size(); ++i) CHECK(after[i].version > after[i - 1].version);
  CHECK(engine->replay_run(r.id, "not-a-checkpoint").code() == orch::StatusCode::kNotFound);
}

TEST_CASE("goto __end__ finishes the run, goto to an unknown node fails it", "[engine]") {
  auto jump = [](std::string target) {
    return [target](const NodeCall&) -> Result<NodeOutput> {
      NodeOutput out(Value::object());
      out.goto_nodes = {target};
      return out;
    };
  };
  auto wf = make_workflow(R"({"nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", jump("__end__")}, {"b", tracer("b")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  CHECK(r.status == RunStatus::kCompleted);
  CHECK(r.state.find("trace") == nullptr);
  auto bad = make_workflow(R"({"nodes": {"a": {}}, "edges": [["__start__","a"],["a","__end__"]]})", {{"a", jump("ghost")}});
  auto f = run_to_end(*engine, bad);
  CHECK(f.status == RunStatus::kFailed);
  CHECK(f.error.find("unknown node 'ghost'") != std::string::npos);
}

TEST_CASE("a mismatched reducer type fails the run cleanly", "[engine]") {
  auto wf = make_workflow(R"({"state_schema": {"n": {"type": "number", "reducer": "add"}},
    "nodes": {"t": {"type": "transform", "updates": {"n": "three"}}}, "edges": [["__start__","t"],["t","__end__"]]})");
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  CHECK(r.status == RunStatus::kFailed);
  CHECK(r.error.find("state key 'n'") != std::string::npos);
}

namespace {
// Counts checkpoint commits and how many asked for a sync to disk.
class CountingStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  orch::Status commit_checkpoint(const orch::Checkpoint& cp, const orch::RunRecord& run, bool sync) override {
    ++commits;
    if (sync) ++synced;
    return StoreWrapper::commit_checkpoint(cp, run, sync);
  }
  std::atomic<int> commits{0};
  std::atomic<int> synced{0};
};
}  // namespace

TEST_CASE("durability modes: sync commits every superstep, full syncs, exit writes at pause or end", "[engine]") {
  auto wf_text = std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}, "c": {}}, "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})";
  std::map<std::string, orch::NodeFunction> fns = {{"a", tracer("a")}, {"b", tracer("b")}, {"c", tracer("c")}};
  for (const char* mode : {"sync", "full", "exit"}) {
    INFO(mode);
    auto store = std::make_shared<CountingStore>(orch::new_memory_store());
    auto engine = make_engine(nullptr, nullptr, store);
    auto r = run_to_end(*engine, make_workflow(wf_text, fns), Value::object(),
                        Value::object({{"durability", mode}}));
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(trace_of(r) == std::vector<std::string>{"a", "b", "c"});
    if (std::string(mode) == "exit") {
      CHECK(store->commits == 1);  // only the final checkpoint
    } else {
      CHECK(store->commits == 5);  // __init__, a, b, c, __end__
    }
    CHECK(store->synced == (std::string(mode) == "full" ? 5 : 0));
  }
  // "exit" still writes when the run pauses, so a resume finds its place.
  auto store = std::make_shared<CountingStore>(orch::new_memory_store());
  auto engine = make_engine(nullptr, nullptr, store);
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(, "durability": "exit", "interrupt_after": ["a"],
    "nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}});
  auto id = *engine->start_run(wf, {});
  REQUIRE(engine->wait(id, 10s)->status == RunStatus::kInterrupted);
  CHECK(store->commits == 1);
  CHECK(engine->store()->latest_checkpoint(id)->completed_nodes == std::vector<std::string>{"a"});
  REQUIRE(engine->resume_run(id, Value()).ok());
  CHECK(engine->wait(id, 10s)->status == RunStatus::kCompleted);
}

TEST_CASE("recover() starts a run that stopped before its first checkpoint", "[engine]") {
  auto store = orch::new_memory_store();
  auto wf = make_workflow(std::string(R"({"id": "wf", )") + kTraceSchema + R"(,
    "nodes": {"a": {}}, "edges": [["__start__","a"],["a","__end__"]]})",
                          {{"a", tracer("a")}});
  orch::RunRecord r;
  r.id = "early";
  r.status = RunStatus::kRunning;
  r.workflow_id = "wf";
  r.state = json(R"({"trace": ["before"]})");
  REQUIRE(store->create_run(r).ok());  // as if the process died right after creating it
  orch::EngineOptions options;
  options.store = store;
  options.workflow_resolver = [wf](const std::string&) -> Result<std::shared_ptr<const orch::Workflow>> { return wf; };
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  REQUIRE((*engine)->recover().ok());
  auto done = (*engine)->wait("early", 10s);
  REQUIRE(done->status == RunStatus::kCompleted);
  CHECK(trace_of(*done) == std::vector<std::string>{"before", "a"});
}

namespace {
std::string temp_crash_log(const std::string& content) {
  std::string path = (std::filesystem::temp_directory_path() / ("orch-crashes-" + orch::new_uuid())).string();
  std::ofstream(path) << content;
  return path;
}
}  // namespace

TEST_CASE("recover() fails a run that crashed the process max_recoveries times", "[engine][hardening]") {
  // A run whose node crashes the process would otherwise crash it on every
  // restart. The crash log names the run a crashing thread was executing.
  auto store = orch::new_memory_store();
  auto wf = make_workflow(std::string(R"({"id": "wf", )") + kTraceSchema + R"(,
    "nodes": {"a": {}}, "edges": [["__start__","a"],["a","__end__"]]})",
                          {{"a", tracer("a")}});
  orch::RunRecord r;
  r.id = "looping";
  r.status = RunStatus::kRunning;
  r.workflow_id = "wf";
  r.recoveries = 2;  // resumed twice after crashes already
  REQUIRE(store->create_run(r).ok());
  orch::EngineOptions options;
  options.store = store;
  options.max_recoveries = 2;
  options.crash_log_path = temp_crash_log("looping\n");
  options.workflow_resolver = [wf](const std::string&) -> Result<std::shared_ptr<const orch::Workflow>> { return wf; };
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  REQUIRE((*engine)->recover().ok());
  auto done = (*engine)->wait("looping", 10s);
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kFailed);
  CHECK(done->error.find("crashed while executing this run") != std::string::npos);
  CHECK(std::filesystem::file_size(options.crash_log_path) == 0);  // read once
  std::filesystem::remove(options.crash_log_path);
}

TEST_CASE("recover() counts a resume only against runs the crash log names", "[engine][hardening]") {
  auto store = orch::new_memory_store();
  std::atomic<long long> count_while_running{-1};
  auto wf = make_workflow(std::string(R"({"id": "wf", )") + kTraceSchema + R"(,
    "nodes": {"a": {}}, "edges": [["__start__","a"],["a","__end__"]]})",
                          {{"a", [&](const NodeCall& call) -> Result<NodeOutput> {
                              if (call.run_id == "crashed") count_while_running = store->get_run("crashed")->recoveries;
                              return NodeOutput(Value::object());
                            }}});
  for (const char* id : {"crashed", "killed"}) {
    orch::RunRecord r;
    r.id = id;
    r.status = RunStatus::kRunning;
    r.workflow_id = "wf";
    r.recoveries = 2;  // two crash resumes already; one more is allowed (max 3)
    REQUIRE(store->create_run(r).ok());
  }
  orch::EngineOptions options;
  options.store = store;
  options.crash_log_path = temp_crash_log("crashed\ncrashed\n");
  options.workflow_resolver = [wf](const std::string&) -> Result<std::shared_ptr<const orch::Workflow>> { return wf; };
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  REQUIRE((*engine)->recover().ok());
  for (const char* id : {"crashed", "killed"}) {
    auto done = (*engine)->wait(id, 10s);
    REQUIRE(done.ok());
    CHECK(done->status == RunStatus::kCompleted);
  }
  CHECK(count_while_running == 3);                         // counted before it ran again
  CHECK(store->get_run("killed")->recoveries == 2);     // only in flight: not counted
  std::filesystem::remove(options.crash_log_path);
}

namespace {
// Counts batches and the writes that bypassed them.
class BatchCountingStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  orch::Status write_batch(orch::StoreBatch& batch) override {
    ++batches;
    if (batch.checkpoint) {
      ++checkpoints_in_batches;
      if (!batch.steps.empty() && !batch.events.empty()) ++checkpoints_with_their_writes;
    }
    return target().write_batch(batch);
  }
  orch::Status put_step(const orch::StepRecord& step) override {
    note_direct("step " + step.node_name);
    return StoreWrapper::put_step(step);
  }
  orch::Result<int64_t> append_event(orch::EventRecord e) override {
    note_direct("event " + e.kind);
    return StoreWrapper::append_event(std::move(e));
  }
  orch::Status put_pending_write(const orch::PendingWrite& w) override {
    note_direct("pending write " + w.node_name);
    return StoreWrapper::put_pending_write(w);
  }
  orch::Status update_run(const orch::RunRecord& run) override {
    note_direct("run " + std::string(orch::run_status_name(run.status)));
    return StoreWrapper::update_run(run);
  }
  void note_direct(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    direct_writes.push_back(what);
  }
  std::mutex mu;
  std::vector<std::string> direct_writes;
  std::atomic<int> batches{0};
  std::atomic<int> checkpoints_in_batches{0};
  std::atomic<int> checkpoints_with_their_writes{0};
};
}  // namespace

namespace {
// Counts batches whose checkpoint travels with the next step's record, and
// fails the batch holding the checkpoint after node `fail_after` when set.
class NextStepBatchStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  orch::Status write_batch(orch::StoreBatch& batch) override {
    if (batch.checkpoint) {
      if (!fail_after.empty() && batch.checkpoint->step_id == fail_after) {
        // Not Unavailable: a transient failure does not fail the run (engine_lease_test).
        return orch::Status::internal("the disk is gone");
      }
      for (const orch::StepRecord& step : batch.steps) {
        if (step.status == orch::StepStatus::kRunning && step.node_name != batch.checkpoint->step_id) {
          ++checkpoints_with_next_step;
        }
      }
    }
    return target().write_batch(batch);
  }
  std::string fail_after;
  std::atomic<int> checkpoints_with_next_step{0};
};

std::shared_ptr<orch::InProcessWorkers> counting_workers(std::atomic<int>* calls) {
  auto workers = std::make_shared<orch::InProcessWorkers>();
  workers->add("w", {}, [calls](const orch::WorkerRequest& req) {
    ++*calls;
    orch::WorkerReply reply;
    reply.output = "did " + req.prompt;
    return reply;
  });
  return workers;
}

const char* const kThreeTasks = R"({"nodes": {"a": {"prompt_template": "a"}, "b": {"prompt_template": "b"},
    "c": {"prompt_template": "c"}}, "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})";
}  // namespace

TEST_CASE("a worker node's checkpoint goes out with the next node's step record", "[engine][store]") {
  auto sqlite = orch::open_sqlite_store(":memory:");
  REQUIRE(sqlite.ok());
  auto store = std::make_shared<NextStepBatchStore>(*sqlite);
  std::atomic<int> calls{0};
  auto engine = make_engine(counting_workers(&calls), nullptr, store);
  auto r = run_to_end(*engine, make_workflow(kThreeTasks));
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(calls == 3);
  // a's checkpoint with b's record, b's with c's (one transaction each).
  CHECK(store->checkpoints_with_next_step >= 2);
  auto cps = store->list_checkpoints(r.id);
  REQUIRE(cps.ok());
  CHECK(cps->size() == 5);  // __init__, a, b, c, __end__
}

TEST_CASE("a checkpoint that cannot be written fails the run before the next call goes out", "[engine][store]") {
  auto store = std::make_shared<NextStepBatchStore>(orch::new_memory_store());
  store->fail_after = "a";
  std::atomic<int> calls{0};
  auto engine = make_engine(counting_workers(&calls), nullptr, store);
  auto r = run_to_end(*engine, make_workflow(kThreeTasks));
  REQUIRE(r.status == RunStatus::kFailed);
  CHECK(r.error.find("checkpoint failed") != std::string::npos);
  CHECK(r.error.find("the disk is gone") != std::string::npos);
  CHECK(calls == 1);  // b was never called
}

TEST_CASE("in-process supersteps write their steps, events and checkpoint as one batch", "[engine][store]") {
  auto sqlite = orch::open_sqlite_store(":memory:");
  REQUIRE(sqlite.ok());
  auto store = std::make_shared<BatchCountingStore>(*sqlite);
  auto engine = make_engine(nullptr, nullptr, store);
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}, "c": {}}, "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}, {"c", tracer("c")}});
  std::mutex mu;
  std::vector<int64_t> heard;
  auto sub = engine->subscribe("", [&](const orch::EventRecord& ev) {
    std::lock_guard<std::mutex> lock(mu);
    heard.push_back(ev.seq);
  });
  auto r = run_to_end(*engine, wf);
  engine->unsubscribe(sub);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(trace_of(r) == std::vector<std::string>{"a", "b", "c"});
  // Each node's superstep: its step record and events travel with its checkpoint.
  CHECK(store->checkpoints_with_their_writes >= 3);
  CHECK(store->direct_writes.empty());
  // Seqs are contiguous from 1 in the store, and listeners heard each once, in order.
  auto events = store->list_events(r.id, 0, 1000);
  REQUIRE(events.ok());
  REQUIRE(!events->empty());
  for (size_t i = 0; i < events->size(); ++i) CHECK((*events)[i].seq == static_cast<int64_t>(i + 1));
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(heard.size() == events->size());
  for (size_t i = 0; i < heard.size(); ++i) CHECK(heard[i] == static_cast<int64_t>(i + 1));
}

TEST_CASE("an in-process node's output text is read as a worker's reply would be", "[engine]") {
  // Control fields inside a JSON "output" text count, as they do in a worker's reply.
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}, "c": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"],["c","__end__"]]})",
                          {{"a", [](const NodeCall&) -> Result<NodeOutput> {
                              return NodeOutput(Value::object({{"trace", Value::array({"a"})}, {"output", R"({"goto": "c"})"}}));
                            }},
                           {"b", tracer("b")},
                           {"c", tracer("c")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(trace_of(r) == std::vector<std::string>{"a", "c"});
  CHECK(r.state["output"].as_string() == R"({"goto": "c"})");
  // Updates that are not an object change nothing, as from a worker.
  auto odd = make_workflow(R"({"nodes": {"a": {}}, "edges": [["__start__","a"],["a","__end__"]]})",
                           {{"a", [](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(Value::array({1})); }}});
  auto r2 = run_to_end(*engine, odd, json(R"({"keep": 1})"));
  REQUIRE(r2.status == RunStatus::kCompleted);
  CHECK(r2.state == json(R"({"keep": 1})"));
}

TEST_CASE("step times and durations read the clock afresh after a node ran", "[engine][store]") {
  // Records made together share one clock reading; one made after the node
  // function ran must not reuse a reading from before it.
  auto clock = std::make_shared<orch::ManualClock>();
  auto store = orch::new_memory_store();
  auto wf = make_workflow(R"({"nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})",
                          {{"a", [clock](const NodeCall&) -> Result<NodeOutput> {
                              clock->advance(50ms);
                              return NodeOutput(Value::object());
                            }},
                           {"b", [clock](const NodeCall&) -> Result<NodeOutput> {
                              clock->advance(7ms);
                              return NodeOutput(Value::object());
                            }}});
  auto engine = make_engine(nullptr, clock, store);
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  auto steps = store->list_steps(r.id);
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == 2);
  CHECK((*steps)[0].ended_at_ms - (*steps)[0].started_at_ms == 50);
  CHECK((*steps)[1].started_at_ms == (*steps)[0].ended_at_ms);
  CHECK((*steps)[1].ended_at_ms - (*steps)[1].started_at_ms == 7);
  auto events = store->list_events(r.id, 0, 1000);
  REQUIRE(events.ok());
  std::vector<int64_t> durations;
  for (const auto& ev : *events) {
    if (ev.kind == "task_result") durations.push_back(ev.data["duration_ms"].as_int());
  }
  CHECK(durations == std::vector<int64_t>{50, 7});
}

TEST_CASE("checkpoint scheduler metadata leaves out what is empty and still resumes", "[engine]") {
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "b": {}, "c": {}}, "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})",
                          {{"a", tracer("a")}, {"b", tracer("b")}, {"c", tracer("c")}});
  auto engine = make_engine();
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  auto cps = *engine->store()->list_checkpoints(r.id);
  const orch::Checkpoint* after_a = nullptr;
  for (const auto& cp : cps) {
    if (cp.step_id == "a") after_a = &cp;
  }
  REQUIRE(after_a != nullptr);
  const Value& sched = after_a->metadata["scheduler"];
  CHECK(sched["ready"] == json(R"(["b"])"));
  for (const char* absent : {"dead", "parked", "passed_before", "route_results", "end_reached"}) {
    CHECK(sched.find(absent) == nullptr);
  }
  CHECK(cps.back().metadata["scheduler"]["end_reached"].as_bool());
  // A fork from there runs b and c, and only them.
  auto fork = engine->fork_run(after_a->id, Value::object());
  REQUIRE(fork.ok());
  auto forked = engine->wait(*fork, 10s);
  REQUIRE(forked.ok());
  REQUIRE(forked->status == RunStatus::kCompleted);
  CHECK(trace_of(*forked) == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("the engine keeps the newest compiled workflows for the next runs, and only a few", "[engine]") {
  auto engine = make_engine();
  auto transform = [](int i) {
    return make_workflow(R"({"nodes": {"t": {"type": "transform", "updates": {"n": )" + std::to_string(i) +
                         R"(}}}, "edges": [["__start__","t"],["t","__end__"]]})");
  };
  // Deleting a run drops the engine's hold on it at once, so only the cache
  // of compiled workflows can keep `watched` alive.
  auto run_and_delete = [&engine](std::shared_ptr<const orch::Workflow> w) {
    auto r = run_to_end(*engine, std::move(w));
    REQUIRE(engine->delete_run(r.id).ok());
    return r;
  };
  auto wf = transform(0);
  std::weak_ptr<const orch::Workflow> watched = wf;
  REQUIRE(run_and_delete(wf).status == RunStatus::kCompleted);
  REQUIRE(run_and_delete(wf).status == RunStatus::kCompleted);  // a second run of the same object
  wf.reset();
  CHECK_FALSE(watched.expired());  // still compiled, though no run of it exists
  for (int i = 1; i <= 16; ++i) {
    auto r = run_and_delete(transform(i));
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(r.state["n"].as_int() == i);
  }
  CHECK(watched.expired());  // sixteen newer ones pushed it out
}

TEST_CASE("a cancel while a node runs stamps its event with the time it happens", "[engine]") {
  // b's reply is handled (and stamped) while a runs on the draining thread
  // without the run lock; the cancel that follows must not reuse that reading.
  auto clock = std::make_shared<orch::ManualClock>();
  auto store = orch::new_memory_store();
  std::mutex mu;
  std::condition_variable cv;
  bool a_started = false, b_returned = false, release_a = false;
  auto wf = make_workflow(R"({"nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["__start__","b"],["a","__end__"],["b","__end__"]]})",
                          {{"a", [&](const NodeCall&) -> Result<NodeOutput> {
                              std::unique_lock<std::mutex> lock(mu);
                              a_started = true;
                              cv.notify_all();
                              cv.wait_for(lock, 10s, [&] { return release_a; });
                              return NodeOutput(Value::object());
                            }},
                           {"b", [&](const NodeCall&) -> Result<NodeOutput> {
                              std::unique_lock<std::mutex> lock(mu);
                              cv.wait_for(lock, 10s, [&] { return a_started; });
                              b_returned = true;
                              cv.notify_all();
                              return NodeOutput(Value::object());
                            }}});
  auto engine = make_engine(nullptr, clock, store);
  const int64_t start_ms = clock->now_ms();
  auto id = engine->start_run(wf, {});
  REQUIRE(id.ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return b_returned; }));
  }
  std::this_thread::sleep_for(200ms);  // b's reply is handled meanwhile
  clock->advance(100ms);
  REQUIRE(engine->cancel_run(*id).ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    release_a = true;
  }
  cv.notify_all();
  auto r = engine->wait(*id, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kCancelled);
  auto events = store->list_events(*id, 0, 1000);
  REQUIRE(events.ok());
  bool saw_cancel = false;
  for (const auto& ev : *events) {
    if (ev.kind == "run.cancelled") {
      saw_cancel = true;
      CHECK(ev.created_at_ms == start_ms + 100);
    }
  }
  CHECK(saw_cancel);
}

TEST_CASE("a run that pauses writes its record with its last events, in one batch", "[engine][store]") {
  auto sqlite = orch::open_sqlite_store(":memory:");
  REQUIRE(sqlite.ok());
  auto store = std::make_shared<BatchCountingStore>(*sqlite);
  auto engine = make_engine(nullptr, nullptr, store);
  auto wf = make_workflow(std::string(R"({)") + kTraceSchema + R"(,
    "nodes": {"a": {}, "ask": {"type": "interrupt"}, "after": {}},
    "edges": [["__start__","a"],["a","ask"],["ask","after"],["after","__end__"]]})",
                          {{"a", tracer("a")}, {"after", tracer("after")}});
  auto id = engine->start_run(wf, {});
  REQUIRE(id.ok());
  auto paused = engine->wait(*id, 10s);
  REQUIRE(paused.ok());
  REQUIRE(paused->status == RunStatus::kInterrupted);
  CHECK(store->direct_writes.empty());  // no separate update_run, no event on its own
  auto stored = store->get_run(*id);
  REQUIRE(stored.ok());
  CHECK(stored->status == RunStatus::kInterrupted);
  auto events = store->list_events(*id, 0, 1000);
  REQUIRE(events.ok());
  REQUIRE(!events->empty());
  CHECK(events->back().kind == "run.interrupted");
}
