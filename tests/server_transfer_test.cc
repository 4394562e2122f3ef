// SPDX-License-Identifier: MIT
// orch export / orch import (transfer/store_transfer.h): a SQLite database's
// workflows, workers and runs at rest move into PostgreSQL (and SQLite)
// unchanged, and a hostile or cut export file fails with its line number.
#include <filesystem>
#include <sstream>
#include <thread>

#include "app.h"
#include "catch.h"
#include "orch/id.h"
#include "support/postgres_cluster.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"
#include "transfer/record_json.h"
#include "transfer/store_transfer.h"
#include "worker_book.h"

using namespace std::chrono_literals;
using orch::Status;
using orch::Value;
using orch::server::ExportOptions;
using orch::server::ImportOptions;
using orch::server::TransferCounts;
using orch::testing::json_body;
using orch::testing::TestServer;

namespace {

const char* kLinear = R"({"id": "linear", "name": "Linear",
  "state_schema": {"log": {"type": "array", "reducer": "append"}, "n": {"type": "number", "reducer": "add"}},
  "nodes": {"a": {"type": "transform", "updates": {"log": ["a"], "n": 1}},
            "b": {"type": "transform", "updates": {"log": ["b"], "n": 2}}},
  "edges": [["__start__", "a"], ["a", "b"], ["b", "__end__"]]})";

std::string wait_stopped(httplib::Client& c, const std::string& id) {
  for (int i = 0; i < 2000; ++i) {
    Value run = json_body(c.Get(("/runs/" + id).c_str()));
    const std::string status = run["status"].get_string("");
    if (status != "running" && status != "pending") return status;
    std::this_thread::sleep_for(5ms);
  }
  FAIL("run did not stop");
  return "";
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("orch-transfer-" + orch::new_uuid());
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Everything the store holds about `run_id`, as JSON, for comparing stores.
Value dump_run(orch::Store& store, const std::string& run_id) {
  Value out = Value::object();
  auto run = store.get_run(run_id);
  REQUIRE(run.ok());
  out.set("run", orch::server::to_json(*run));
  Value cps = Value::array();
  auto checkpoints = store.list_checkpoints(run_id);
  REQUIRE(checkpoints.ok());
  for (const auto& c : *checkpoints) cps.push_back(orch::server::to_json(c));
  out.set("checkpoints", cps);
  Value steps = Value::array();
  auto listed = store.list_steps(run_id);
  REQUIRE(listed.ok());
  for (const auto& s : *listed) steps.push_back(orch::server::to_json(s));
  out.set("steps", steps);
  Value events = Value::array();
  auto evs = store.list_events(run_id, 0, 100000);
  REQUIRE(evs.ok());
  for (const auto& e : *evs) events.push_back(orch::server::to_json(e));
  out.set("events", events);
  return out;
}

std::shared_ptr<orch::Store> open(const std::string& db, const std::string& pg_schema = "") {
  orch::server::ServerConfig config;
  config.db = db;
  if (!pg_schema.empty()) config.postgres.schema = pg_schema;
  auto store = orch::server::open_store(config);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

Status import_text(orch::Store& store, const std::string& text, TransferCounts* counts = nullptr,
                   size_t max_line = 256u << 20) {
  std::istringstream in(text);
  TransferCounts local;
  ImportOptions options;
  options.max_line_bytes = max_line;
  return orch::server::import_store(store, in, options, counts ? counts : &local);
}

std::string export_text(orch::Store& store, TransferCounts* counts = nullptr) {
  std::ostringstream out;
  TransferCounts local;
  REQUIRE(orch::server::export_store(store, out, ExportOptions(), counts ? counts : &local).ok());
  return out.str();
}

}  // namespace

TEST_CASE("orch export then import moves a SQLite database into PostgreSQL and SQLite unchanged", "[server][transfer][postgres]") {
  TempDir dir;
  const std::string source_db = (dir.path / "source.db").string();
  std::vector<std::string> run_ids;
  {
    orch::server::ServerConfig config;
    config.db = source_db;
    TestServer server(config);
    auto c = server.client();
    REQUIRE(c->Post("/workflows", kLinear, "application/json")->status == 201);
    REQUIRE(c->Post("/workers", R"({"id": "w1", "url": "http://127.0.0.1:9/webhook", "tags": ["x"]})", "application/json")->status == 201);
    for (int i = 0; i < 3; ++i) {
      Value started = json_body(c->Post("/workflows/linear/run", R"({"input": {"n": 10}})", "application/json"));
      run_ids.push_back(started["id"].as_string());
      REQUIRE(wait_stopped(*c, run_ids.back()) == "completed");
    }
    // One paused at a breakpoint: interrupted runs move too, resumable.
    Value paused = json_body(c->Post("/workflows/linear/run", R"({"input": {"n": 1}, "config": {"interrupt_before": ["b"]}})", "application/json"));
    run_ids.push_back(paused["id"].as_string());
    REQUIRE(wait_stopped(*c, run_ids.back()) == "interrupted");
  }
  auto source = open(source_db);
  TransferCounts exported;
  const std::string text = export_text(*source, &exported);
  CHECK(exported.workflows == 1);
  CHECK(exported.host_records == 1);
  CHECK(exported.runs == 4);
  CHECK(exported.events > 0);
  CHECK(exported.checkpoints >= 4);

  auto shared = orch::testing::shared_postgres_cluster();
  INFO(shared.status().to_string());
  REQUIRE(shared.ok());
  const std::string pg_uri = (*shared)->uri();
  for (const std::string& target_db : {pg_uri, (dir.path / "target.db").string()}) {
    const bool pg = target_db == pg_uri;
    INFO("target " << (pg ? "postgres" : "sqlite"));
    {
      auto target = open(target_db, pg ? "transfer_target" : "");
      TransferCounts imported;
      Status s = import_text(*target, text, &imported);
      INFO(s.to_string());
      REQUIRE(s.ok());
      CHECK(imported.runs == 4);
      CHECK(imported.events == exported.events);
      CHECK(imported.steps == exported.steps);
      for (const std::string& id : run_ids) CHECK(dump_run(*target, id) == dump_run(*source, id));
      // Runs list in the source's order.
      orch::RunFilter all;
      auto a = source->list_runs(all);
      auto b = target->list_runs(all);
      REQUIRE(a.ok());
      REQUIRE(b.ok());
      REQUIRE(a->size() == b->size());
      for (size_t i = 0; i < a->size(); ++i) CHECK((*a)[i].id == (*b)[i].id);
      auto workers = target->list_host_records(orch::server::kWorkersCollection);
      REQUIRE(workers.ok());
      REQUIRE(workers->size() == 1);
      CHECK((*workers)[0]["id"].as_string() == "w1");
      // Importing again adds nothing: everything is already there.
      TransferCounts again;
      REQUIRE(import_text(*target, text, &again).ok());
      CHECK(again.runs == 0);
      CHECK(again.skipped_runs == 4);
      CHECK(again.skipped_workflows == 1);
    }
    // A server on the target serves the moved runs and resumes the paused one.
    orch::server::ServerConfig config;
    config.db = target_db;
    if (pg) config.postgres.schema = "transfer_target";
    TestServer server(config);
    auto c = server.client();
    Value run = json_body(c->Get(("/runs/" + run_ids[0]).c_str()));
    CHECK(run["status"].as_string() == "completed");
    CHECK(run["state_json"]["n"].get_int(0) == 13);
    CHECK(c->Get("/workflows/linear")->status == 200);
    CHECK(c->Get("/workers")->body.find("\"w1\"") != std::string::npos);
    auto resumed = c->Post(("/runs/" + run_ids[3] + "/resume").c_str(), R"({})", "application/json");
    REQUIRE(resumed);
    CHECK(resumed->status == 200);
    CHECK(wait_stopped(*c, run_ids[3]) == "completed");
    CHECK(json_body(c->Get(("/runs/" + run_ids[3]).c_str()))["state_json"]["n"].get_int(0) == 4);
  }
}

TEST_CASE("orch export leaves running runs out unless asked, and says so", "[server][transfer]") {
  auto store = orch::new_memory_store();
  orch::RunRecord done;
  done.id = "done";
  done.status = orch::RunStatus::kCompleted;
  orch::RunRecord live;
  live.id = "live";
  live.status = orch::RunStatus::kRunning;
  REQUIRE(store->create_run(done).ok());
  REQUIRE(store->create_run(live).ok());
  TransferCounts counts;
  const std::string text = export_text(*store, &counts);
  CHECK(counts.runs == 1);
  CHECK(counts.active_runs_left == 1);
  CHECK(text.find("\"live\"") == std::string::npos);
  std::ostringstream all;
  ExportOptions include;
  include.include_active = true;
  REQUIRE(orch::server::export_store(*store, all, include, &counts).ok());
  CHECK(counts.runs == 2);
  auto target = orch::new_memory_store();
  REQUIRE(import_text(*target, all.str()).ok());
  CHECK(target->get_run("live")->status == orch::RunStatus::kRunning);
}

TEST_CASE("orch import refuses hostile and cut files with the line that is wrong", "[server][transfer][hardening]") {
  auto source = orch::new_memory_store();
  orch::RunRecord r;
  r.id = "r1";
  r.status = orch::RunStatus::kCompleted;
  REQUIRE(source->create_run(r).ok());
  orch::EventRecord e;
  e.run_id = "r1";
  e.kind = "run.completed";
  REQUIRE(source->append_event(e).ok());
  const std::string good = export_text(*source);
  const std::string header = good.substr(0, good.find('\n') + 1);

  struct Case {
    const char* what;
    std::string text;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"empty", "", "empty"},
      {"not an export", "{\"hello\":1}\n", "line 1: not an orch export"},
      {"newer format", "{\"orch_export\":99}\n", "line 1: export format 99"},
      {"malformed JSON", header + "{\"type\":\"run\",\n", "line 2:"},
      {"not an object", header + "[1,2]\n", "line 2: a record must be a JSON object"},
      {"unknown type", header + "{\"type\":\"virus\"}\n", "line 2: unknown record type \"virus\""},
      {"run without id", header + "{\"type\":\"run\",\"run\":{\"status\":\"completed\"}}\n", "line 2: run has no id"},
      {"bad status", header + "{\"type\":\"run\",\"run\":{\"id\":\"x\",\"status\":\"zombie\"}}\n", "line 2: run.status"},
      {"wrong type", header + "{\"type\":\"run\",\"run\":{\"id\":\"x\",\"status\":\"completed\",\"input_tokens\":\"many\"}}\n",
       "line 2: run.input_tokens must be an integer"},
      {"part before its run", header + "{\"type\":\"event\",\"event\":{\"run_id\":\"r9\",\"seq\":1,\"kind\":\"k\"}}\n",
       "line 2: part of run 'r9' does not follow"},
      {"cut short", good.substr(0, good.rfind('\n', good.size() - 2) + 1), "cut short"},
      {"foreign host records", header + "{\"type\":\"host_record\",\"collection\":\"rate_limits\",\"id\":\"w\",\"record\":{}}\n",
       "line 2: host_record collection \"rate_limits\" is not one orch exports"},
      {"after the end", good + "{\"type\":\"run\",\"run\":{\"id\":\"late\",\"status\":\"completed\"}}\n", "after the end line"},
      {"line too long", header + "{\"type\":\"run\",\"run\":{\"id\":\"" + std::string(5000, 'x') + "\"}}\n",
       "line 2: line longer than 4096 bytes"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    auto target = orch::new_memory_store();
    Status s = import_text(*target, c.text, nullptr, 4096);
    INFO(s.to_string());
    CHECK_FALSE(s.ok());
    CHECK(s.message().find(c.message) != std::string::npos);
  }
  // The good file itself imports.
  auto target = orch::new_memory_store();
  REQUIRE(import_text(*target, good).ok());
  CHECK(target->list_events("r1", 0, 10)->size() == 1);
}

TEST_CASE("records survive the JSON round trip field for field", "[server][transfer]") {
  orch::StepRecord s;
  s.id = "s1";
  s.run_id = "r1";
  s.node_name = "n";
  s.status = orch::StepStatus::kFailed;
  s.attempt = 3;
  s.item_index = 2;
  s.input = Value::object({{"a", 1}});
  s.error = "boom";
  s.ended_at_ms = 1234567890123;
  auto back = orch::server::step_from_json(orch::server::to_json(s));
  REQUIRE(back.ok());
  CHECK(orch::server::to_json(*back) == orch::server::to_json(s));
  orch::Checkpoint c;
  c.id = "c1";
  c.run_id = "r1";
  c.version = 7;
  c.completed_nodes = {"a", "b"};
  c.state = Value::object({{"k", Value::array({1, 2})}});
  auto cb = orch::server::checkpoint_from_json(orch::server::to_json(c));
  REQUIRE(cb.ok());
  CHECK(cb->completed_nodes == c.completed_nodes);
  CHECK(orch::server::to_json(*cb) == orch::server::to_json(c));
  CHECK_FALSE(orch::server::checkpoint_from_json(Value::object({{"id", "c"}, {"run_id", "r"}, {"version", 1}, {"completed_nodes", Value::array({1})}})).ok());
  CHECK_FALSE(orch::server::step_from_json(Value::object({{"id", "s"}, {"run_id", "r"}, {"status", "completed"}, {"attempt", 1LL << 40}})).ok());
}
