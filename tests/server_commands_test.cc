// SPDX-License-Identifier: MIT
// Control calls through any instance (server/run_commands.h): two orch serve
// on one PostgreSQL; a run held by A is cancelled, resumed, injected into,
// retried and deleted through B, and a call whose holder is gone is applied
// by the caller once the holder's lease has run out.
#include <chrono>
#include <thread>

#include "catch.h"
#include "app.h"
#include "config.h"
#include "lease_keeper.h"
#include "run_commands.h"
#include "support/fake_workers.h"
#include "support/postgres_cluster.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::json_body;
using orch::testing::TestServer;
using orch::testing::eventually;

namespace {

// A task node on the "slow" worker, then a transform.
const char* kSlow = R"({"workflow": {
    "state_schema": {"draft": {"type": "string"}, "note": {"type": "string"}, "n": {"type": "number", "reducer": "add"}},
    "nodes": {"write": {"type": "task", "worker_tags": ["slow"], "output_key": "draft", "prompt_template": "x"},
              "tail": {"type": "transform", "updates": {"n": 1}}},
    "edges": [["__start__", "write"], ["write", "tail"], ["tail", "__end__"]]}})";

// Two transforms, paused before the second.
const char* kPaused = R"({"workflow": {
    "state_schema": {"log": {"type": "array", "reducer": "append"}, "extra": {"type": "string"}, "note": {"type": "string"}},
    "nodes": {"a": {"type": "transform", "updates": {"log": ["a"]}},
              "b": {"type": "transform", "updates": {"log": ["b"]}}},
    "edges": [["__start__", "a"], ["a", "b"], ["b", "__end__"]]},
  "config": {"interrupt_before": ["b"]}})";

std::string status_of(httplib::Client& c, const std::string& id) {
  return json_body(c.Get(("/runs/" + id).c_str()))["status"].get_string("");
}

orch::server::ServerConfig shared_config(const std::string& schema, const orch::testing::FakeWorker& worker) {
  auto shared = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  orch::server::ServerConfig config;
  config.db = (*shared)->uri();
  config.postgres.schema = schema;
  config.workers = *orch::parse_json(std::string(R"([{"id": "slow", "url": ")") + worker.url() +
                                     R"(", "tags": ["slow"]}])");
  return config;
}

std::string start(httplib::Client& c, const char* body) {
  auto created = c.Post("/runs", body, "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 201);
  return json_body(created)["id"].as_string();
}

}  // namespace

TEST_CASE("two orch serve on one PostgreSQL: a run A holds is injected into, cancelled and deleted through B", "[server][postgres][commands]") {
  orch::testing::FakeWorker worker;
  orch::testing::FakeReply hang;
  hang.hang = true;
  worker.set_default(hang);
  TestServer a(shared_config("serve_commands_running", worker));
  TestServer b(shared_config("serve_commands_running", worker));
  auto ca = a.client();
  auto cb = b.client();

  const std::string id = start(*ca, kSlow);
  REQUIRE(worker.wait_for_calls(1, 10s));  // A is waiting on the worker: it holds the run
  REQUIRE(a.app().engine->holds_run(id));
  REQUIRE_FALSE(b.app().engine->holds_run(id));

  auto injected = cb->Post(("/runs/" + id + "/state").c_str(), R"({"updates": {"note": "through b"}})", "application/json");
  REQUIRE(injected);
  CHECK(injected->status == 200);
  CHECK(json_body(injected)["applied"].get_bool(false));  // at the end of the superstep in flight

  auto cancelled = cb->Post(("/runs/" + id + "/cancel").c_str(), "{}", "application/json");
  REQUIRE(cancelled);
  CHECK(cancelled->status == 200);
  CHECK(status_of(*ca, id) == "cancelled");
  CHECK(a.app().commands->applied_for_others() == 2);
  // A cancelled it itself: its engine lets the run go.
  CHECK(eventually([&] { return !a.app().engine->holds_run(id); }));

  // Deleting a running run A holds: A cancels and removes it.
  const std::string second = start(*ca, kSlow);
  REQUIRE(worker.wait_for_calls(2, 10s));
  auto deleted = cb->Delete(("/runs/" + second).c_str());
  REQUIRE(deleted);
  CHECK(deleted->status == 200);
  CHECK(ca->Get(("/runs/" + second).c_str())->status == 404);
  // Every forwarded call's record was collected.
  auto left = a.app().store->list_host_records(orch::server::kRunCommandsCollection);
  REQUIRE(left.ok());
  CHECK(left->empty());
  worker.release();
}

TEST_CASE("two orch serve on one PostgreSQL: a run interrupted on A is resumed through B, one failed on A retried through B", "[server][postgres][commands]") {
  orch::testing::FakeWorker worker;
  TestServer a(shared_config("serve_commands_paused", worker));
  TestServer b(shared_config("serve_commands_paused", worker));
  auto ca = a.client();
  auto cb = b.client();

  const std::string paused = start(*ca, kPaused);
  REQUIRE(eventually([&] { return status_of(*ca, paused) == "interrupted"; }));
  REQUIRE(a.app().engine->holds_run(paused));  // and renews its lease
  auto injected = cb->Post(("/runs/" + paused + "/state").c_str(), R"({"updates": {"note": "injected"}})", "application/json");
  REQUIRE(injected);
  CHECK(injected->status == 200);
  CHECK(json_body(cb->Get(("/runs/" + paused).c_str()))["state_json"]["note"].get_string("") == "injected");
  auto resumed = cb->Post(("/runs/" + paused + "/resume").c_str(), R"({"state_updates": {"extra": "b"}})", "application/json");
  REQUIRE(resumed);
  CHECK(resumed->status == 200);
  REQUIRE(eventually([&] { return status_of(*cb, paused) == "completed"; }));
  Value state = json_body(cb->Get(("/runs/" + paused).c_str()))["state_json"];
  CHECK(state["extra"].get_string("") == "b");
  CHECK(state["log"].size() == 2);
  CHECK(state["note"].get_string("") == "injected");
  CHECK(a.app().commands->applied_for_others() == 2);

  // Failed on A a moment ago (A's lease on it has not run out): an ended run
  // is anyone's to retry, so B takes it and runs it.
  worker.push(orch::testing::FakeReply::failing(500));  // one attempt (the default): the run fails
  const std::string failed = start(*ca, kSlow);
  REQUIRE(eventually([&] { return status_of(*ca, failed) == "failed"; }));
  auto retried = cb->Post(("/runs/" + failed + "/retry").c_str(), "{}", "application/json");
  REQUIRE(retried);
  CHECK(retried->status == 200);
  CHECK(eventually([&] { return status_of(*ca, failed) == "completed"; }));
}

TEST_CASE("a control call whose holder is gone is applied by the caller once the lease has run out", "[server][postgres][commands]") {
  orch::testing::FakeWorker worker;
  orch::testing::FakeReply hang;
  hang.hang = true;
  worker.set_default(hang);
  orch::server::ServerConfig config = shared_config("serve_commands_gone", worker);
  config.lease_ttl_ms = 1000;
  auto b = std::make_unique<TestServer>(config);
  std::string id;
  {
    auto a = std::make_unique<TestServer>(config);
    id = start(*a->client(), kSlow);
    REQUIRE(worker.wait_for_calls(1, 10s));
    // A stops renewing (its lease keeper is gone) and answers nothing (its
    // relay is gone), as if its process hung; its engine still holds the run.
    a->app().leases.reset();
    a->app().store_watch.reset();
    a->app().commands.reset();
    auto cb = b->client();
    auto cancelled = cb->Post(("/runs/" + id + "/cancel").c_str(), "{}", "application/json");
    REQUIRE(cancelled);
    CHECK(cancelled->status == 200);
    CHECK(status_of(*cb, id) == "cancelled");
    worker.release();
  }
  auto left = b->app().store->list_host_records(orch::server::kRunCommandsCollection);
  REQUIRE(left.ok());
  CHECK(left->empty());
}

TEST_CASE("a hostile command record gets an error outcome from the run's holder, and nothing else happens", "[server][postgres][commands]") {
  orch::testing::FakeWorker worker;
  orch::testing::FakeReply hang;
  hang.hang = true;
  worker.set_default(hang);
  TestServer a(shared_config("serve_commands_hostile", worker));
  const std::string id = start(*a.client(), kSlow);
  REQUIRE(worker.wait_for_calls(1, 10s));
  auto& store = *a.app().store;
  const char* collection = orch::server::kRunCommandsCollection;
  const long long now = static_cast<long long>(orch::Clock::system()->now_ms());
  REQUIRE(store.put_host_record(collection, "bad-op", Value::object({{"id", "bad-op"}, {"op", "explode"}, {"run_id", id},
                                                                     {"issued_at_ms", now}})).ok());
  REQUIRE(store.put_host_record(collection, "bad-args", Value::object({{"id", "bad-args"}, {"op", "inject"}, {"run_id", id},
                                                                       {"issued_at_ms", now},
                                                                       {"args", Value::object({{"updates", 5}})}})).ok());
  REQUIRE(store.put_host_record(collection, "no-id", Value::object({{"op", "cancel"}, {"run_id", id}, {"issued_at_ms", now}})).ok());
  REQUIRE(store.put_host_record(collection, "no-time", Value::object({{"id", "no-time"}, {"op", "cancel"}, {"run_id", id}})).ok());
  REQUIRE(store.put_host_record(collection, "not-object", Value("cancel")).ok());
  // Records no caller can still be waiting for (10 minutes old) are dropped
  // unapplied, answered or not.
  REQUIRE(store.put_host_record(collection, "stale", Value::object({{"id", "stale"}, {"op", "cancel"}, {"run_id", id},
                                                                    {"issued_at_ms", 1}})).ok());
  REQUIRE(store.put_host_record(collection, "stale-answered",
                                Value::object({{"id", "stale-answered"}, {"op", "cancel"}, {"run_id", id}, {"issued_at_ms", 1},
                                               {"outcome", Value::object({{"code", "ok"}})}})).ok());
  auto outcome_of = [&](const std::string& record_id) {
    auto records = store.list_host_records(collection);
    if (!records.ok()) return std::string();
    for (const Value& r : *records) {
      if (r["id"].get_string("") == record_id) return r["outcome"]["code"].get_string("");
    }
    return std::string();
  };
  CHECK(eventually([&] { return outcome_of("bad-op") == "invalid_argument"; }));
  CHECK(eventually([&] { return outcome_of("bad-args") == "invalid_argument"; }));
  auto present = [&](const std::string& record_id) {
    auto records = store.list_host_records(collection);
    if (!records.ok()) return true;
    for (const Value& r : *records) {
      if (r["id"].get_string("") == record_id) return true;
    }
    return false;
  };
  CHECK(eventually([&] { return !present("stale") && !present("stale-answered") && !present("no-time"); }));
  CHECK(status_of(*a.client(), id) == "running");
  CHECK(a.app().engine->holds_run(id));
  worker.release();
}
