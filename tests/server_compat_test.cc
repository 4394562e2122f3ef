// SPDX-License-Identifier: MIT
// What a NullBoiler client sees of orch (issue: correctness and NullBoiler
// compatibility): step records for every node, legacy runs listing their
// steps at once, paged history.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "catch.h"
#include "support/fake_workers.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"

using namespace std::chrono_literals;
using orch::RunStatus;
using orch::Value;
using orch::testing::json_body;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string start(httplib::Client& c, const std::string& body) {
  auto r = c.Post("/runs", body, "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 201);
  return json_body(r)["id"].as_string();
}

// Waits for run `id` to complete and returns its steps (GET /runs/{id}/steps).
Value steps_of_completed(orch::testing::TestServer& server, httplib::Client& c, const std::string& id) {
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  INFO(ended->error);
  REQUIRE(ended->status == RunStatus::kCompleted);
  return json_body(c.Get(("/runs/" + id + "/steps").c_str()));
}

}  // namespace

TEST_CASE("every executed node has a step record, route, transform and interrupt included", "[server][compat]") {
  orch::testing::TestServer server;
  auto c = server.client();
  const std::string hello = read_text(std::string(ORCH_EXAMPLES_DIR) + "/hello.json");
  std::string id = start(*c, "{\"workflow\": " + hello + "}");
  REQUIRE(server.app().engine->wait(id, 10s)->status == RunStatus::kCompleted);
  Value steps = json_body(c->Get(("/runs/" + id + "/steps").c_str()));
  // greet, enough, again, enough, again, enough: six nodes ran.
  REQUIRE(steps.size() == 6);
  int routes = 0, transforms = 0;
  for (const Value& s : steps.as_array()) {
    CHECK(s["status"].as_string() == "completed");
    if (s["type"].as_string() == "route") {
      ++routes;
      CHECK(s["output_json"].to_json().find("route") != std::string::npos);
    }
    if (s["type"].as_string() == "transform") ++transforms;
  }
  CHECK(routes == 3);
  CHECK(transforms == 3);
  CHECK(json_body(c->Get(("/runs/" + id).c_str()))["steps"].size() == 6);

  std::string paused = start(*c, R"({"workflow": {"nodes": {"i": {"type": "interrupt"}},
      "edges": [["__start__","i"],["i","__end__"]]}})");
  REQUIRE(server.app().engine->wait(paused, 10s)->status == RunStatus::kInterrupted);
  Value interrupt_steps = json_body(c->Get(("/runs/" + paused + "/steps").c_str()));
  REQUIRE(interrupt_steps.size() == 1);
  CHECK(interrupt_steps.as_array()[0]["type"].as_string() == "interrupt");
  CHECK(interrupt_steps.as_array()[0]["output_json"].to_json().find("interrupted") != std::string::npos);
}

TEST_CASE("a send writes a step row per dispatched item and its parent row holds the results", "[server][compat]") {
  // NullBoiler (api 3.4): `<send>_<i>` rows of type task with item_index,
  // running -> completed/failed with {"output": text}; then the send's own
  // row with {"<output_key>": [...]}.
  orch::testing::FakeWorker worker;
  worker.push(orch::testing::FakeReply::with_text("first"));
  worker.push(orch::testing::FakeReply::failing(500));  // item 1: no retry, null in the results
  worker.push(orch::testing::FakeReply::with_text("third"));
  orch::testing::TestServer server;
  auto c = server.client();
  auto added = c->Post("/workers", R"({"id": "w1", "url": ")" + worker.url() + R"(", "tags": ["fan"]})",
                       "application/json");
  REQUIRE(added);
  REQUIRE(added->status == 201);
  std::string id = start(*c, R"({"workflow": {
      "state_schema": {"files": {"type": "array"}, "done": {"type": "array", "reducer": "append"}},
      "nodes": {"fan": {"type": "send", "items_key": "state.files", "target_node": "review", "output_key": "done",
                        "max_concurrency": 1, "on_item_error": "null"},
                "review": {"type": "task", "worker_tags": ["fan"], "prompt_template": "review {{item}}"}},
      "edges": [["__start__", "fan"], ["fan", "__end__"]]}, "input": {"files": ["a", "b", "c"]}})");
  Value steps = steps_of_completed(server, *c, id);
  INFO(steps.to_json());
  REQUIRE(steps.size() == 4);
  std::string parent_id;
  std::map<std::string, Value> items;
  for (const Value& s : steps.as_array()) {
    if (s["type"].as_string() == "send") {
      parent_id = s["id"].as_string();
      CHECK(s["def_step_id"].as_string() == "fan");
      CHECK(s["status"].as_string() == "completed");
      CHECK(s["output_json"].to_json() == R"({"done":["first",null,"third"]})");
    } else {
      items[s["def_step_id"].as_string()] = s;
    }
  }
  REQUIRE(items.size() == 3);
  for (int i = 0; i < 3; ++i) {
    const Value& row = items["fan_" + std::to_string(i)];
    CHECK(row["type"].as_string() == "task");
    CHECK(row["item_index"].as_int() == i);
    CHECK(row["parent_step_id"].as_string() == parent_id);
    CHECK(row["worker_id"].as_string() == "w1");
  }
  CHECK(items["fan_0"]["status"].as_string() == "completed");
  CHECK(items["fan_0"]["output_json"].to_json() == R"({"output":"first"})");
  CHECK(items["fan_1"]["status"].as_string() == "failed");
  CHECK(!items["fan_1"]["error_text"].as_string().empty());
  CHECK(items["fan_2"]["output_json"].to_json() == R"({"output":"third"})");
  // One row per item, also through GET /runs/{id}/steps/{sid}.
  auto one = c->Get(("/runs/" + id + "/steps/" + items["fan_2"]["id"].as_string()).c_str());
  REQUIRE(one);
  CHECK(one->status == 200);
}

TEST_CASE("a subgraph's step row holds what it wrote", "[server][compat]") {
  orch::testing::TestServer server;
  auto c = server.client();
  auto wf = c->Post("/workflows", R"({"id": "child", "state_schema": {"answer": {"type": "string"}},
      "nodes": {"t": {"type": "transform", "updates": {"answer": "42"}}},
      "edges": [["__start__", "t"], ["t", "__end__"]]})", "application/json");
  REQUIRE(wf);
  REQUIRE(wf->status / 100 == 2);
  std::string id = start(*c, R"({"workflow": {"state_schema": {"answer": {"type": "string"}},
      "nodes": {"sub": {"type": "subgraph", "workflow_id": "child", "output_key": "answer"}},
      "edges": [["__start__", "sub"], ["sub", "__end__"]]}})");
  Value steps = steps_of_completed(server, *c, id);
  INFO(steps.to_json());
  REQUIRE(steps.size() == 1);
  CHECK(steps.as_array()[0]["type"].as_string() == "subgraph");
  CHECK(steps.as_array()[0]["output_json"].to_json() == R"({"answer":"42"})");
  CHECK(!steps.as_array()[0]["child_run_id"].as_string().empty());
}

TEST_CASE("a send to a subgraph node runs a child run per item with the item in its input", "[server][compat]") {
  // SPEC: the send's target may be a real node of another type; a subgraph
  // target is one child run per item. The child echoes its item back.
  orch::testing::TestServer server;
  auto c = server.client();
  auto wf = c->Post("/workflows", R"({"id": "echo", "state_schema": {"item": {}, "answer": {"type": "array", "reducer": "append"}},
      "nodes": {"t": {"type": "transform", "updates": {"answer": ["seen"]}}},
      "edges": [["__start__", "t"], ["t", "__end__"]]})", "application/json");
  REQUIRE(wf);
  REQUIRE(wf->status / 100 == 2);
  std::string id = start(*c, R"({"workflow": {
      "nodes": {"fan": {"type": "send", "items_key": "state.jobs", "target_node": "each", "output_key": "answers"},
                "each": {"type": "subgraph", "workflow_id": "echo", "output_key": "answer"}},
      "edges": [["__start__", "fan"], ["fan", "__end__"]]}, "input": {"jobs": [{"n": 1}, {"n": 2}]}})");
  Value steps = steps_of_completed(server, *c, id);
  INFO(steps.to_json());
  Value run = json_body(c->Get(("/runs/" + id).c_str()));
  CHECK(run["state_json"]["answers"].to_json() == R"([["seen"],["seen"]])");
  REQUIRE(steps.size() == 3);  // two item records, then the send's own
  for (int i = 0; i < 2; ++i) {
    const Value& item = steps.as_array()[i];
    CHECK(item["type"].as_string() == "subgraph");
    CHECK(item["def_step_id"].as_string() == "fan_" + std::to_string(i));
    CHECK(item["status"].as_string() == "completed");
    const std::string child = item["child_run_id"].as_string();
    REQUIRE(!child.empty());
    Value child_run = json_body(c->Get(("/runs/" + child).c_str()));
    CHECK(child_run["status"].as_string() == "completed");
    CHECK(child_run["state_json"]["item"]["n"].as_int() == i + 1);
  }
}

namespace {
// The value of counter `name` in a Prometheus text page; -1 when absent.
long long counter_value(const std::string& page, const std::string& name) {
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stoll(line.substr(name.size() + 1));
  }
  return -1;
}
}  // namespace

TEST_CASE("metrics carry NullBoiler's eleven counters under its names, with HELP and TYPE", "[server][compat]") {
  orch::testing::FakeWorker worker;
  worker.push(orch::testing::FakeReply::failing(500));  // the first attempt fails, the retry succeeds
  orch::server::ServerConfig config;
  config.health_check_interval_ms = 50;
  orch::testing::TestServer server(config);
  auto c = server.client();
  auto added = c->Post("/workers", R"({"id": "w1", "url": ")" + worker.url() + R"(", "tags": ["t"]})",
                       "application/json");
  REQUIRE(added);
  REQUIRE(added->status == 201);
  std::string id = start(*c, R"({"workflow": {"nodes": {"a": {"type": "task", "worker_tags": ["t"],
      "prompt_template": "hi", "retry": {"max_attempts": 2, "initial_interval_ms": 1}}},
      "edges": [["__start__", "a"], ["a", "__end__"]]}})");
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  INFO(ended->error);
  REQUIRE(ended->status == RunStatus::kCompleted);
  std::string page;
  for (int i = 0; i < 200; ++i) {  // the health round runs on its own timer
    page = c->Get("/metrics")->body;
    if (counter_value(page, "nullboiler_worker_health_checks_total") > 0) break;
    std::this_thread::sleep_for(10ms);
  }
  INFO(page);
  const char* names[] = {"nullboiler_http_requests_total", "nullboiler_runs_created_total",
                         "nullboiler_runs_idempotent_replays_total", "nullboiler_steps_claimed_total",
                         "nullboiler_steps_retry_scheduled_total", "nullboiler_worker_dispatch_success_total",
                         "nullboiler_worker_dispatch_failure_total", "nullboiler_worker_health_checks_total",
                         "nullboiler_worker_health_failures_total", "nullboiler_callback_sent_total",
                         "nullboiler_callback_failed_total"};
  size_t last = 0;
  for (const char* name : names) {
    const size_t at = page.find(std::string("# TYPE ") + name + " counter\n");
    CHECK(at != std::string::npos);
    CHECK(at > last);  // the reference's order
    last = at;
    CHECK(page.find(std::string("# HELP ") + name + " ") != std::string::npos);
  }
  CHECK(counter_value(page, "nullboiler_http_requests_total") >= 3);
  CHECK(counter_value(page, "nullboiler_runs_created_total") == 1);
  CHECK(counter_value(page, "nullboiler_steps_claimed_total") == 2);
  CHECK(counter_value(page, "nullboiler_steps_retry_scheduled_total") == 1);
  CHECK(counter_value(page, "nullboiler_worker_dispatch_success_total") == 1);
  CHECK(counter_value(page, "nullboiler_worker_dispatch_failure_total") == 1);
  CHECK(counter_value(page, "nullboiler_worker_health_checks_total") >= 1);
  CHECK(counter_value(page, "nullboiler_worker_health_failures_total") == 0);
  CHECK(counter_value(page, "orch_steps_started_total") == 2);
}

TEST_CASE("a legacy steps run lists all its steps from the start", "[server][compat]") {
  orch::testing::TestServer server;
  auto c = server.client();
  // No workers: "a" waits for one (and fails at its timeout), but both rows exist at once.
  std::string id = start(*c, R"({"steps": [{"id": "a", "type": "task", "prompt_template": "x", "timeout_ms": 500},
                                          {"id": "b", "type": "task", "depends_on": ["a"]}]})");
  Value steps = json_body(c->Get(("/runs/" + id + "/steps").c_str()));
  REQUIRE(steps.size() == 2);
  std::set<std::string> names;
  for (const Value& s : steps.as_array()) names.insert(s["def_step_id"].as_string());
  CHECK(names == std::set<std::string>{"a", "b"});
  // Once the run has ended, none is left pending: the one never reached is skipped.
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  CHECK(ended->status == RunStatus::kFailed);
  INFO(ended->error);
  CHECK(ended->error.find("node 'a' failed") != std::string::npos);
  Value after = json_body(c->Get(("/runs/" + id + "/steps").c_str()));
  for (const Value& s : after.as_array()) CHECK(s["status"].as_string() != "pending");
}

TEST_CASE("a run started before any worker has its tags waits for one and then completes", "[server][compat]") {
  // NullBoiler's no_worker: the node is tried again until a worker comes.
  orch::testing::FakeWorker worker;
  orch::testing::TestServer server;
  auto c = server.client();
  std::string id = start(*c, R"({"workflow": {"state_schema": {"draft": {"type": "string"}},
      "nodes": {"write": {"type": "task", "worker_tags": ["writer"], "output_key": "draft", "prompt_template": "hi"}},
      "edges": [["__start__", "write"], ["write", "__end__"]]}})");
  std::this_thread::sleep_for(200ms);
  CHECK(json_body(c->Get(("/runs/" + id).c_str()))["status"].as_string() == "running");
  auto added = c->Post("/workers", R"({"id": "late", "url": ")" + worker.url() + R"(", "tags": ["writer"]})",
                       "application/json");
  REQUIRE(added);
  REQUIRE(added->status == 201);
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  INFO(ended->error);
  CHECK(ended->status == RunStatus::kCompleted);
  CHECK(ended->state["draft"].as_string() == "echo: hi");
}

TEST_CASE("a node whose worker never comes fails at its timeout saying no worker was available", "[server][compat]") {
  // The registry's deadline answers first (the engine's own timer is a
  // backstop a moment later), so the error says why, not only "timed out".
  orch::testing::TestServer server;
  auto c = server.client();
  std::string id = start(*c, R"({"workflow": {"nodes": {"write": {"type": "task", "worker_tags": ["nobody"],
      "prompt_template": "hi", "timeout_ms": 300}}, "edges": [["__start__", "write"], ["write", "__end__"]]}})");
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  CHECK(ended->status == RunStatus::kFailed);
  INFO(ended->error);
  CHECK(ended->error.find("no worker available for node write") != std::string::npos);
  CHECK(ended->error.find("nobody") != std::string::npos);
}

TEST_CASE("POST /runs/{id}/state works on a run that ended - fix a failed run and retry it", "[server][compat]") {
  orch::testing::FakeWorker worker;
  worker.push(orch::testing::FakeReply::failing(500));
  orch::testing::TestServer server;
  auto c = server.client();
  REQUIRE(c->Post("/workers", R"({"id": "w", "url": ")" + worker.url() + R"("})", "application/json")->status == 201);
  std::string id = start(*c, R"({"workflow": {"state_schema": {"topic": {}, "draft": {"type": "string"}},
      "nodes": {"write": {"type": "task", "output_key": "draft", "prompt_template": "on {{state.topic}}"}},
      "edges": [["__start__", "write"], ["write", "__end__"]]}})");
  REQUIRE(server.app().engine->wait(id, 10s)->status == RunStatus::kFailed);
  auto injected = c->Post(("/runs/" + id + "/state").c_str(), R"({"updates": {"topic": "otters"}})", "application/json");
  REQUIRE(injected);
  INFO(injected->body);
  REQUIRE(injected->status == 200);
  CHECK(json_body(injected).to_json() == R"({"applied":true})");
  Value run = json_body(c->Get(("/runs/" + id).c_str()));
  CHECK(run["status"].as_string() == "failed");
  CHECK(run["state_json"]["topic"].as_string() == "otters");
  REQUIRE(c->Post(("/runs/" + id + "/retry").c_str(), "", "application/json")->status == 200);
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  CHECK(ended->status == RunStatus::kCompleted);
  CHECK(ended->state["draft"].as_string() == "echo: on otters");
  // Not after a node: none would run again.
  auto later = c->Post(("/runs/" + id + "/state").c_str(), R"({"updates": {"topic": "x"}, "apply_after_step": "write"})",
                       "application/json");
  REQUIRE(later);
  CHECK(later->status == 409);
}

TEST_CASE("a workflow field of the wrong type is a 400 that names it instead of a silent default", "[server][compat]") {
  // SPEC §8: every bad input gets a 4xx. NullBoiler fell back to defaults
  // (no timeout, no breakpoint) without a word.
  orch::testing::TestServer server;
  auto c = server.client();
  struct Bad {
    const char* fragment;
    const char* names;
  };
  for (const Bad& b : std::vector<Bad>{
           {R"("interrupt_before": "t")", "interrupt_before must be an array of strings"},
           {R"("recursion_limit": -1)", "recursion_limit must be a positive integer"},
           {R"("durability": "bogus")", "durability must be"},
       }) {
    const std::string wf = std::string(R"({"id": "bad", )") + b.fragment +
                           R"(, "nodes": {"t": {"type": "transform", "updates": {}}}, "edges": [["__start__", "t"], ["t", "__end__"]]})";
    INFO(wf);
    auto r = c->Post("/runs", std::string(R"({"workflow": )") + wf + "}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find(b.names) != std::string::npos);
  }
  for (const Bad& b : std::vector<Bad>{
           {R"("timeout_ms": "abc")", "timeout_ms must be an integer"},
           {R"("timeout_ms": 0)", "timeout_ms must be a positive integer"},
           {R"("timeout_ms": 1e3)", "timeout_ms must be an integer"},
           {R"("cache": {"ttl_ms": "abc"})", "cache.ttl_ms must be an integer"},
       }) {
    const std::string wf = std::string(R"({"id": "bad", "nodes": {"t": {"type": "task", "prompt_template": "x", )") +
                           b.fragment + R"(}}, "edges": [["__start__", "t"], ["t", "__end__"]]})";
    INFO(wf);
    auto r = c->Post("/runs", std::string(R"({"workflow": )") + wf + "}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find(b.names) != std::string::npos);
  }
}

TEST_CASE("checkpoints and events come in pages with a cursor", "[server][hardening]") {
  orch::testing::TestServer server;
  auto c = server.client();
  const std::string hello = read_text(std::string(ORCH_EXAMPLES_DIR) + "/hello.json");
  std::string id = start(*c, "{\"workflow\": " + hello + "}");
  REQUIRE(server.app().engine->wait(id, 10s)->status == RunStatus::kCompleted);
  const Value all = json_body(c->Get(("/runs/" + id + "/checkpoints").c_str()));
  const size_t all_checkpoints = all.size();
  REQUIRE(all_checkpoints > 4);
  // As in NullBoiler: __init__ is version 0, each checkpoint after it one more.
  for (size_t i = 0; i < all_checkpoints; ++i) CHECK((*all.at(i))["version"].as_int() == static_cast<int64_t>(i));
  CHECK((*all.at(0))["step_id"].as_string() == "__init__");
  // As NullBoiler's: __init__ has no metadata (omitted); a node's names the workflow version.
  CHECK((*all.at(0)).find("metadata") == nullptr);
  CHECK((*all.at(1))["metadata"]["workflow_version"].get_int(0) == 1);
  std::vector<int64_t> versions;
  std::string cursor = "";
  for (int page = 0; page < 20 && (page == 0 || !cursor.empty()); ++page) {
    // The first page without a cursor, from __init__.
    auto r = c->Get(("/runs/" + id + "/checkpoints?limit=2" + (page ? "&after_version=" + cursor : "")).c_str());
    REQUIRE(r);
    Value items = json_body(r);
    for (const Value& cp : items.as_array()) versions.push_back(cp["version"].as_int());
    cursor = r->get_header_value("X-Next-After-Version");
  }
  CHECK(versions.size() == all_checkpoints);
  CHECK(std::is_sorted(versions.begin(), versions.end()));

  const size_t all_events = json_body(c->Get(("/runs/" + id + "/events").c_str())).size();
  size_t paged = 0;
  cursor = "0";
  for (int page = 0; page < 100 && !cursor.empty(); ++page) {
    auto r = c->Get(("/runs/" + id + "/events?limit=5&after_seq=" + cursor).c_str());
    REQUIRE(r);
    paged += json_body(r).size();
    cursor = r->get_header_value("X-Next-After-Seq");
  }
  CHECK(paged == all_events);
}

TEST_CASE("a send of a huge list of tiny items fails at the default max_send_items, calling no worker", "[server][hardening]") {
  // 200 000 items is ~1.2 MB of state (well under max_state_bytes): without
  // the limit each would become a worker call held in memory.
  orch::testing::TestServer server;
  auto c = server.client();
  std::string items = "[0";
  for (int i = 1; i < 200000; ++i) items += ",0";
  items += "]";
  std::string id = start(*c, R"({"workflow": {"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work"},
      "work": {"type": "task", "worker_tags": ["nobody"], "prompt_template": "x"}},
    "edges": [["__start__","fan"],["fan","__end__"]]}, "input": {"items": )" + items + "}}");
  auto ended = server.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  CHECK(ended->status == RunStatus::kFailed);
  INFO(ended->error);
  CHECK(ended->error.find("are 200000, over the limit of 10000 (max_send_items)") != std::string::npos);
  auto steps = json_body(c->Get(("/runs/" + id + "/steps").c_str()));
  CHECK(steps.size() == 1);  // the send's own record, no item calls

  // The config's limit reaches the engine.
  orch::server::ServerConfig config;
  config.max_send_items = 2;
  orch::testing::TestServer small(config);
  auto c2 = small.client();
  id = start(*c2, R"({"workflow": {"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work"},
      "work": {"type": "task", "worker_tags": ["nobody"], "prompt_template": "x"}},
    "edges": [["__start__","fan"],["fan","__end__"]]}, "input": {"items": [1, 2, 3]}})");
  ended = small.app().engine->wait(id, 10s);
  REQUIRE(ended.ok());
  CHECK(ended->error.find("are 3, over the limit of 2 (max_send_items)") != std::string::npos);
}

TEST_CASE("a server holding max_live_runs runs answers 429 to another", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.max_live_runs = 2;
  orch::testing::TestServer server(config);
  auto c = server.client();
  const std::string pausing = R"({"workflow": {"nodes": {"i": {"type": "interrupt"}},
      "edges": [["__start__","i"],["i","__end__"]]}})";
  start(*c, pausing);
  start(*c, pausing);
  auto refused = c->Post("/runs", pausing, "application/json");
  REQUIRE(refused);
  CHECK(refused->status == 429);
  CHECK(refused->body.find("max_live_runs") != std::string::npos);
}
