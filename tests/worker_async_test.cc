// SPDX-License-Identifier: MIT
// The mqtt and redis_stream worker protocols end to end, against real
// mosquitto and redis-server processes on loopback: round trips through the
// engine, many concurrent runs, a node that waits across an orch restart, and
// a broker restart in the middle of runs (issue: async workers).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/async_workers.h"
#include "orch/engine.h"
#include "orch/sqlite_store.h"
#include "orch/worker_registry.h"
#include "workers/async/redis_client.h"
#include "support/broker_workers.h"
#include "support/brokers.h"
#include "support/engine_fixture.h"
#include "support/fake_workers.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::RunRecord;
using orch::RunStatus;
using orch::Value;
using orch::WorkerInfo;
using orch::WorkerReply;
using orch::testing::BrokerRequest;
using orch::testing::json;
using orch::testing::make_workflow;

namespace {

// Says why the test did not run, on the console and in the report.
#define ORCH_SKIP(msg)                                      \
  do {                                                      \
    std::fprintf(stderr, "%s\n", std::string(msg).c_str()); \
    WARN(msg);                                              \
    return;                                                 \
  } while (0)

enum class Kind { kMqtt, kMqttV311, kRedis };

// A broker, a test worker serving it and how orch reaches that worker.
struct Rig {
  Kind kind;
  std::unique_ptr<orch::testing::BrokerProcess> broker;
  std::unique_ptr<orch::testing::TestWorkerBase> worker;

  bool mqtt() const { return kind != Kind::kRedis; }
  std::string protocol() const { return mqtt() ? "mqtt" : "redis_stream"; }
  std::string url() const {
    const std::string where = "127.0.0.1:" + std::to_string(broker->port());
    return mqtt() ? "mqtt://" + where + "/work/jobs" : "redis://" + where + "/orch:work";
  }
  WorkerInfo worker_info(int max_concurrent = 1) const {
    WorkerInfo w;
    w.id = mqtt() ? "mq" : "rs";
    w.url = url();
    w.protocol = protocol();
    w.max_concurrent = max_concurrent;
    return w;
  }
  orch::testing::MqttTestWorker& mqtt_worker() { return static_cast<orch::testing::MqttTestWorker&>(*worker); }
};

// The rig, or null with `why` set when the broker is not installed.
std::unique_ptr<Rig> make_rig(Kind kind, std::string* why) {
  auto rig = std::make_unique<Rig>();
  rig->kind = kind;
  if (rig->mqtt()) {
    if (!orch::testing::MosquittoBroker::available()) {
      *why = "skipped: mosquitto is not installed (set ORCH_MOSQUITTO or run scripts/bootstrap.sh)";
      return nullptr;
    }
    rig->broker = std::make_unique<orch::testing::MosquittoBroker>();
    rig->worker = std::make_unique<orch::testing::MqttTestWorker>(rig->broker->port(), "work/jobs",
                                                                   kind == Kind::kMqttV311);
  } else {
    if (!orch::testing::RedisBroker::available()) {
      *why = "skipped: redis-server is not installed (set ORCH_REDIS_SERVER or run scripts/bootstrap.sh)";
      return nullptr;
    }
    rig->broker = std::make_unique<orch::testing::RedisBroker>();
    rig->worker = std::make_unique<orch::testing::RedisTestWorker>(rig->broker->port(), "orch:work");
  }
  return rig;
}

const char* kOneTask = R"({"nodes": {"t": {"prompt_template": "hello {{input.name}}", "output_key": "answer"}},
  "edges": [["__start__","t"],["t","__end__"]], "state_schema": {"answer": {"type": "string"}}})";

std::string one_task_with_timeout(int64_t timeout_ms) {
  return R"({"nodes": {"t": {"prompt_template": "hello {{input.name}}", "output_key": "answer", "timeout_ms": )" +
         std::to_string(timeout_ms) + R"(}},
  "edges": [["__start__","t"],["t","__end__"]], "state_schema": {"answer": {"type": "string"}}})";
}

std::unique_ptr<orch::Engine> open_engine(std::shared_ptr<orch::Store> store,
                                          std::shared_ptr<orch::Dispatcher> dispatcher) {
  orch::EngineOptions options;
  options.store = std::move(store);
  options.dispatcher = std::move(dispatcher);
  options.owner_id = "orch-async-test";  // the same orch before and after a restart
  options.threads = 4;
  auto engine = orch::Engine::open(std::move(options));
  REQUIRE(engine.ok());
  return std::move(engine).value();
}

std::string start(orch::Engine& engine, std::shared_ptr<const orch::Workflow> wf, const std::string& name) {
  orch::RunOptions options;
  options.input = Value::object({{"name", name}});
  auto id = engine.start_run(std::move(wf), std::move(options));
  REQUIRE(id.ok());
  return *id;
}

RunRecord wait_for(orch::Engine& engine, const std::string& run_id, std::chrono::milliseconds timeout = 20s) {
  auto r = engine.wait(run_id, timeout);
  INFO("run " << run_id << " did not stop in time");
  REQUIRE(r.ok());
  return *r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename Pred>
bool eventually(std::chrono::milliseconds timeout, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::vector<orch::StepRecord> steps_of(orch::Store& store, const std::string& run_id) {
  auto steps = store.list_steps(run_id);
  REQUIRE(steps.ok());
  return *steps;
}

void check_round_trip(Kind kind) {
  std::string why;
  auto rig = make_rig(kind, &why);
  if (!rig) ORCH_SKIP(why);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(rig->worker_info()).ok());
  auto engine = orch::testing::make_engine(registry);
  auto r = orch::testing::run_to_end(*engine, make_workflow(kOneTask), json(R"({"name":"bob"})"));
  INFO(r.error);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["answer"].as_string() == "echo: hello bob");

  auto requests = rig->worker->requests();
  REQUIRE(requests.size() == 1);
  const BrokerRequest& req = requests[0];
  auto steps = steps_of(*engine->store(), r.id);
  REQUIRE(steps.size() == 1);
  CHECK(steps[0].worker_id == rig->worker_info().id);
  CHECK(req.correlation_id == steps[0].id + "#1.1");
  CHECK(req.payload["correlation_id"].as_string() == req.correlation_id);
  CHECK(req.payload["reply_to"].as_string() == req.reply_to);
  CHECK(req.reply_to.rfind(rig->mqtt() ? "orch/replies/" : "orch:replies:", 0) == 0);
  CHECK(req.payload["message"].as_string() == "hello bob");
  CHECK(req.payload["session_key"].as_string() == "run_" + r.id + "_step_" + steps[0].id);
  CHECK(req.payload["run_id"].as_string() == r.id);
  CHECK(req.payload["node"].as_string() == "t");
  CHECK(req.payload["deadline_ms"].get_int(0) > req.payload["timestamp_ms"].get_int(0));
  if (kind == Kind::kMqtt) CHECK(req.v5_properties);
  auto status = *registry->get_worker(rig->worker_info().id);
  CHECK(status.calls == 1);
  CHECK(status.in_flight == 0);
}

void check_reply_fields(Kind kind) {
  std::string why;
  auto rig = make_rig(kind, &why);
  if (!rig) ORCH_SKIP(why);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(rig->worker_info()).ok());
  auto engine = orch::testing::make_engine(registry);

  // Control fields steer the run; a duplicate reply (QoS 1 redelivery) changes nothing.
  rig->worker->set_duplicates(true);
  rig->worker->set_reply([](const BrokerRequest&) {
    return json(R"({"response": "scored", "state_updates": {"score": 7}, "usage": {"input_tokens": 3, "output_tokens": 2}})");
  });
  auto r = orch::testing::run_to_end(*engine, make_workflow(kOneTask), json(R"({"name":"x"})"));
  INFO(r.error);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["score"].as_int() == 7);  // state_updates replace the output_key write (NullBoiler)
  CHECK(r.input_tokens + r.output_tokens == 5);
  CHECK(rig->worker->replies_sent() == 2);

  // An error reply fails the step with the worker's message.
  rig->worker->set_duplicates(false);
  rig->worker->set_reply([](const BrokerRequest&) { return json(R"({"error": "model overloaded"})"); });
  auto failed = orch::testing::run_to_end(*engine, make_workflow(kOneTask), json(R"({"name":"y"})"));
  CHECK(failed.status == RunStatus::kFailed);
  CHECK(failed.error.find("model overloaded") != std::string::npos);
}

void check_concurrent_runs(Kind kind, int runs) {
  std::string why;
  auto rig = make_rig(kind, &why);
  if (!rig) ORCH_SKIP(why);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(rig->worker_info(runs)).ok());
  auto engine = orch::testing::make_engine(registry);
  auto wf = make_workflow(kOneTask);
  const auto began = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  for (int i = 0; i < runs; ++i) ids.push_back(start(*engine, wf, "n" + std::to_string(i)));
  for (int i = 0; i < runs; ++i) {
    RunRecord r = wait_for(*engine, ids[i]);
    INFO(r.error);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(r.state["answer"].as_string() == "echo: hello n" + std::to_string(i));
  }
  CHECK(rig->worker->requests().size() == static_cast<size_t>(runs));
  CHECK(std::chrono::steady_clock::now() - began < 20s);
  auto status = *registry->get_worker(rig->worker_info().id);
  CHECK(status.in_flight == 0);
  CHECK(status.failures == 0);
}

void check_orch_restart(Kind kind) {
  std::string why;
  auto rig = make_rig(kind, &why);
  if (!rig) ORCH_SKIP(why);
  const std::string dir = orch::testing::make_temp_dir("orch-restart");
  orch::AsyncWorkerOptions async;
  async.instance = "restart-" + std::to_string(::getpid());
  async.state_dir = dir;
  auto open_registry = [&] {
    auto registry = orch::test::builtin_registry();
    REQUIRE(orch::register_async_protocols(*registry, async).ok());
    REQUIRE(registry->add_worker(rig->worker_info()).ok());
    return registry;
  };
  auto open_store = [&] {
    auto store = orch::open_sqlite_store(dir + "/orch.db");
    REQUIRE(store.ok());
    return *store;
  };
  auto wf = make_workflow(one_task_with_timeout(20000));

  rig->worker->hold(true);
  std::string run_id;
  std::string step_id;
  {
    auto registry = open_registry();
    auto store = open_store();
    auto engine = open_engine(store, registry);
    run_id = start(*engine, wf, "restart");
    REQUIRE(rig->worker->wait_for_requests(1, 10s));
    // The node is stored as waiting: its step is running, without a result.
    auto steps = steps_of(*store, run_id);
    REQUIRE(steps.size() == 1);
    CHECK(steps[0].status == orch::StepStatus::kRunning);
    step_id = steps[0].id;
    // The protocol records the request once the broker acknowledged it.
    if (rig->mqtt()) {
      const std::string ledger = dir + "/mqtt-" + async.instance + ".pending";
      const std::string cid = rig->worker->requests()[0].correlation_id;
      CHECK(eventually(5s, [&] { return read_file(ledger).find("+" + cid + " ") != std::string::npos; }));
    }
    engine.reset();  // orch goes down...
  }
  // ...and while it is down the worker answers.
  rig->worker->release_held();
  REQUIRE(rig->worker->replies_sent() == 1);
  std::this_thread::sleep_for(300ms);
  {
    auto registry = open_registry();
    auto store = open_store();
    auto engine = open_engine(store, registry);
    REQUIRE(engine->recover().ok());
    RunRecord r = wait_for(*engine, run_id);
    INFO(r.error);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(r.state["answer"].as_string() == "echo: hello restart");
    // The waiting node was not asked again: one request, answered once.
    CHECK(rig->worker->requests().size() == 1);
    auto steps = steps_of(*store, run_id);
    REQUIRE(steps.size() == 1);
    CHECK(steps[0].id == step_id);
    CHECK(steps[0].status == orch::StepStatus::kCompleted);
  }
  std::filesystem::remove_all(dir);
}

void check_broker_restart(Kind kind) {
  std::string why;
  auto rig = make_rig(kind, &why);
  if (!rig) ORCH_SKIP(why);
  orch::WorkerRegistryOptions options;
  options.failure_threshold = 1000000;  // timeouts here say nothing about the worker
  auto registry = orch::test::builtin_registry(options);
  REQUIRE(registry->add_worker(rig->worker_info(50)).ok());
  auto engine = orch::testing::make_engine(registry);
  constexpr int kRuns = 10;

  // Runs in flight when the broker dies (it loses everything: SIGKILL).
  rig->worker->hold(true);
  auto before_wf = make_workflow(one_task_with_timeout(4000));
  std::vector<std::string> before;
  for (int i = 0; i < kRuns; ++i) before.push_back(start(*engine, before_wf, "b" + std::to_string(i)));
  REQUIRE(rig->worker->wait_for_requests(kRuns, 10s));
  const auto killed_at = std::chrono::steady_clock::now();
  rig->broker->stop(false);
  std::this_thread::sleep_for(300ms);
  rig->broker->start();
  // The first half of the work died with the broker; the rest is answered
  // once the worker is connected again.
  std::set<std::string> lost(before.begin(), before.begin() + kRuns / 2);
  CHECK(rig->worker->drop_held([&](const BrokerRequest& r) {
    return lost.count(r.payload["run_id"].get_string("")) != 0;
  }) == static_cast<size_t>(kRuns / 2));
  rig->worker->hold(false);
  rig->worker->release_held();

  // Runs started after the broker came back: all of them complete.
  if (rig->mqtt()) REQUIRE(rig->mqtt_worker().wait_subscribed(10s, 2));
  auto after_wf = make_workflow(one_task_with_timeout(10000));
  std::vector<std::string> after;
  for (int i = 0; i < kRuns; ++i) after.push_back(start(*engine, after_wf, "a" + std::to_string(i)));

  int completed_before = 0;
  for (const std::string& id : before) {
    RunRecord r = wait_for(*engine, id, 15s);
    INFO(r.error);
    if (r.status == RunStatus::kCompleted) {
      CHECK(lost.count(id) == 0);
      ++completed_before;
      continue;
    }
    // Lost with the broker: a clear error at the deadline, no hang.
    REQUIRE(r.status == RunStatus::kFailed);
    CHECK((r.error.find("no reply from worker " + rig->worker_info().id) != std::string::npos ||
           r.error.find("no worker is subscribed") != std::string::npos));
  }
  CHECK(std::chrono::steady_clock::now() - killed_at < 10s);
  for (int i = 0; i < kRuns; ++i) {
    RunRecord r = wait_for(*engine, after[i], 15s);
    INFO(r.error);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(r.state["answer"].as_string() == "echo: hello a" + std::to_string(i));
  }
  std::printf("%s broker restart: %d of %d runs in flight completed\n", rig->protocol().c_str(), completed_before,
              kRuns);
}

}  // namespace

TEST_CASE("mqtt: a v5 worker answers through the engine", "[mqtt]") { check_round_trip(Kind::kMqtt); }
TEST_CASE("mqtt: a v3.1.1 worker answers through payload fields", "[mqtt]") { check_round_trip(Kind::kMqttV311); }
TEST_CASE("mqtt: control fields, duplicate replies, error replies", "[mqtt]") { check_reply_fields(Kind::kMqtt); }
TEST_CASE("mqtt: 100 concurrent runs", "[mqtt]") { check_concurrent_runs(Kind::kMqtt, 100); }
TEST_CASE("mqtt: a waiting node survives an orch restart", "[mqtt]") { check_orch_restart(Kind::kMqtt); }
TEST_CASE("mqtt: runs survive a broker restart or fail at their deadline", "[mqtt]") {
  check_broker_restart(Kind::kMqtt);
}

TEST_CASE("redis_stream: a worker answers through the engine", "[redis]") { check_round_trip(Kind::kRedis); }
TEST_CASE("redis_stream: control fields, duplicate replies, error replies", "[redis]") {
  check_reply_fields(Kind::kRedis);
}
TEST_CASE("redis_stream: 100 concurrent runs", "[redis]") { check_concurrent_runs(Kind::kRedis, 100); }
TEST_CASE("redis_stream: a waiting node survives an orch restart", "[redis]") { check_orch_restart(Kind::kRedis); }
TEST_CASE("redis_stream: runs survive a broker restart or fail at their deadline", "[redis]") {
  check_broker_restart(Kind::kRedis);
}

TEST_CASE("redis_stream: replies a crashed orch read but never acknowledged are reclaimed", "[redis]") {
  if (!orch::testing::RedisBroker::available()) ORCH_SKIP("skipped: redis-server is not installed");
  orch::testing::RedisBroker broker;
  orch::internal::SigpipeGuard sigpipe;
  auto client = orch::internal::RedisClient::connect("127.0.0.1", broker.port(), 2s, 2s);
  REQUIRE(client.ok());
  auto run = [&](std::vector<std::string> args) {
    auto r = (*client)->command(args);
    REQUIRE(r.ok());
    INFO(r->str);
    REQUIRE_FALSE(r->is_error());
    return *r;
  };
  const std::string instance = "reclaim-" + std::to_string(::getpid());
  const std::string replies = "orch:replies:" + instance;
  const std::string pending = "orch:pending:" + instance;
  // Before the "crash": two requests were published, their replies arrived, and
  // were read, one by this instance's consumer and one by another consumer of
  // the group, but neither was acknowledged.
  run({"XGROUP", "CREATE", replies, "orch", "0", "MKSTREAM"});
  run({"XADD", replies, "*", "correlation_id", "own#1.1", "payload", R"({"response":"from my pending list"})"});
  run({"XADD", replies, "*", "correlation_id", "other#1.1", "payload", R"({"response":"from a dead consumer"})"});
  run({"XREADGROUP", "GROUP", "orch", instance, "COUNT", "1", "STREAMS", replies, ">"});
  run({"XREADGROUP", "GROUP", "orch", "crashed-consumer", "COUNT", "1", "STREAMS", replies, ">"});
  const std::string now = std::to_string(orch::Clock::system()->now_ms());
  run({"HSET", pending, "own#1.1", now, "other#1.1", now});
  std::this_thread::sleep_for(100ms);

  orch::AsyncWorkerOptions async;
  async.instance = instance;
  async.redis_claim_idle_ms = 50;
  auto registry = orch::test::builtin_registry();
  REQUIRE(orch::register_async_protocols(*registry, async).ok());
  WorkerInfo w;
  w.id = "rs";
  w.protocol = "redis_stream";
  w.url = "redis://127.0.0.1:" + std::to_string(broker.port()) + "/orch:work";
  w.max_concurrent = 2;
  REQUIRE(registry->add_worker(w).ok());
  for (const auto& [cid, text] : {std::pair<std::string, std::string>{"own#1.1", "from my pending list"},
                                  {"other#1.1", "from a dead consumer"}}) {
    orch::WorkerRequest req;
    req.call_id = cid;
    req.run_id = "r";
    req.node_name = "t";
    req.deadline = orch::Clock::system()->steady_now() + 5s;
    WorkerReply reply = orch::testing::dispatch_and_wait(*registry, req, 10s);
    INFO(reply.status.message());
    CHECK(reply.status.ok());
    CHECK(reply.output == text);
  }
  // Neither request went out again, and both replies end up acknowledged.
  CHECK(run({"XLEN", "orch:work"}).integer == 0);
  CHECK(eventually(5s, [&] { return run({"XPENDING", replies, "orch"}).elements[0].integer == 0; }));
  CHECK(run({"HLEN", pending}).integer == 0);
}

TEST_CASE("mqtt: a request no worker subscribes to fails at once, not at the deadline", "[mqtt]") {
  if (!orch::testing::MosquittoBroker::available()) ORCH_SKIP("skipped: mosquitto is not installed");
  orch::testing::MosquittoBroker broker;
  auto registry = orch::test::builtin_registry();
  WorkerInfo w;
  w.id = "nobody";
  w.protocol = "mqtt";
  w.url = "mqtt://127.0.0.1:" + std::to_string(broker.port()) + "/nobody/listens";
  REQUIRE(registry->add_worker(w).ok());
  orch::WorkerRequest req;
  req.call_id = "lonely#1.1";
  req.run_id = "r";
  req.node_name = "t";
  req.deadline = orch::Clock::system()->steady_now() + 30s;
  const auto began = std::chrono::steady_clock::now();
  WorkerReply reply = orch::testing::dispatch_and_wait(*registry, req, 10s);
  CHECK(reply.status.code() == orch::StatusCode::kUnavailable);
  CHECK(reply.status.message() == "mqtt: no worker is subscribed to the request topic");
  CHECK(reply.retryable);
  CHECK(std::chrono::steady_clock::now() - began < 5s);
}
