// SPDX-License-Identifier: MIT
// The parts of the asynchronous worker protocols that need no broker: URLs,
// payloads, reply parsing, the call table, the ledger file, registration and
// failing cleanly when the broker cannot be reached (issue: async workers).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "workers/async/async_calls.h"
#include "workers/async/async_wire.h"
#include "workers/async/call_ledger.h"
#include "catch.h"
#include "orch/async_workers.h"
#include "orch/worker_registry.h"
#include "support/brokers.h"
#include "support/fake_workers.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::ManualClock;
using orch::Status;
using orch::StatusCode;
using orch::Value;
using orch::WorkerInfo;
using orch::WorkerReply;
using orch::WorkerRequest;
using orch::internal::AsyncCalls;
using orch::internal::CallLedger;

namespace {

WorkerReply ok_reply(std::string text) {
  WorkerReply r;
  r.output = std::move(text);
  return r;
}

struct Captured {
  int calls = 0;
  WorkerReply reply;
};

orch::Dispatcher::Callback capture(Captured* c) {
  return [c](WorkerReply r) {
    ++c->calls;
    c->reply = std::move(r);
  };
}

}  // namespace

TEST_CASE("broker urls: host, port, topic or stream, bad ones are refused", "[async]") {
  auto t = orch::internal::parse_broker_url("mqtt://10.0.0.5:1884/jobs/summarize", "mqtt", 1883);
  REQUIRE(t.ok());
  CHECK(t->host == "10.0.0.5");
  CHECK(t->port == 1884);
  CHECK(t->name == "jobs/summarize");
  CHECK(t->endpoint() == "10.0.0.5:1884");
  auto d = orch::internal::parse_broker_url("redis://cache/orch:requests", "redis", 6379);
  REQUIRE(d.ok());
  CHECK(d->port == 6379);
  CHECK(d->name == "orch:requests");
  for (const char* bad : {"http://h:1/t", "mqtt://h:1", "mqtt://h:1/", "mqtt://:1/t", "mqtt://h:0/t",
                          "mqtt://h:70000/t", "mqtt://h:x/t", "mqtt://h:1/a/+/b", "mqtt://h:1/#"}) {
    auto r = orch::internal::parse_broker_url(bad, "mqtt", 1883);
    CHECK_FALSE(r.ok());
    CHECK(r.status().message().find("invalid mqtt:// URL") == 0);
  }
}

TEST_CASE("request payload: the call's traceparent as a field, only when there is one", "[async][trace]") {
  WorkerInfo w;
  w.id = "w1";
  WorkerRequest req;
  req.call_id = "step-1#1.1";
  auto plain = orch::parse_json(orch::internal::async_request_payload(w, req, "r", 1, 2));
  REQUIRE(plain.ok());
  CHECK(plain->find("traceparent") == nullptr);
  req.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto traced = orch::parse_json(orch::internal::async_request_payload(w, req, "r", 1, 2));
  REQUIRE(traced.ok());
  CHECK((*traced)["traceparent"].as_string() == req.traceparent);
}

TEST_CASE("request payload: NullBoiler fields plus run, node and deadline", "[async]") {
  WorkerInfo w;
  w.id = "w1";
  w.token = "tok";
  WorkerRequest req;
  req.call_id = "step-1#2.1";
  req.run_id = "run-9";
  req.node_name = "summarize";
  req.node_type = "task";
  req.prompt = "hello";
  req.attempt = 2;
  req.item = Value::object({{"k", 1}});
  auto body = orch::parse_json(orch::internal::async_request_payload(w, req, "orch/replies/x", 1000, 6000));
  REQUIRE(body.ok());
  CHECK((*body)["correlation_id"].as_string() == "step-1#2.1");
  CHECK((*body)["reply_to"].as_string() == "orch/replies/x");
  CHECK((*body)["timestamp_ms"].as_int() == 1000);
  CHECK((*body)["deadline_ms"].as_int() == 6000);
  CHECK((*body)["message"].as_string() == "hello");
  CHECK((*body)["session_key"].as_string() == "run_run-9_step_step-1");
  CHECK((*body)["token"].as_string() == "tok");
  CHECK((*body)["run_id"].as_string() == "run-9");
  CHECK((*body)["node"].as_string() == "summarize");
  CHECK((*body)["attempt"].as_int() == 2);
  CHECK((*body)["worker_id"].as_string() == "w1");
  CHECK((*body)["item"]["k"].as_int() == 1);
  CHECK(orch::internal::describe_wait(250) == "250 ms");
  CHECK(orch::internal::describe_wait(3999) == "4.0 s");
  CHECK(orch::internal::describe_wait(12345) == "12.3 s");
}

TEST_CASE("replies: correlation from property or payload, output, errors, control fields", "[async]") {
  using orch::internal::parse_async_reply;
  auto a = parse_async_reply(R"({"correlation_id":"c1","response":"done","state_updates":{"x":1}})", "");
  REQUIRE(a.ok());
  CHECK(a->correlation_id == "c1");
  CHECK(a->reply.status.ok());
  CHECK(a->reply.output == "done");
  CHECK(a->reply.envelope["state_updates"]["x"].as_int() == 1);
  auto b = parse_async_reply(R"({"correlation_id":"payload","reply":"r"})", "property");
  REQUIRE(b.ok());
  CHECK(b->correlation_id == "property");
  auto c = parse_async_reply(R"({"correlation_id":"c","error":"model overloaded"})", "");
  REQUIRE(c.ok());
  CHECK(c->reply.status.message() == "model overloaded");
  CHECK(c->reply.retryable);
  auto d = parse_async_reply(R"({"correlation_id":"c","error":"bad input","retryable":false})", "");
  REQUIRE(d.ok());
  CHECK_FALSE(d->reply.retryable);
  auto e = parse_async_reply("not json", "c");
  REQUIRE(e.ok());
  CHECK_FALSE(e->reply.status.ok());
  CHECK_FALSE(parse_async_reply(R"({"response":"who am I for"})", "").ok());
}

TEST_CASE("call table: deadlines, orphans picked up, duplicates dropped, cancel", "[async]") {
  auto clock = std::make_shared<ManualClock>();
  auto calls = std::make_shared<AsyncCalls>(clock, 60s);

  SECTION("a reply completes its call once; a duplicate is dropped") {
    Captured c;
    REQUIRE(calls->begin("a", clock->steady_now() + 10s, nullptr, capture(&c)));
    CHECK(calls->is_waiting("a"));
    CHECK(calls->deliver("a", ok_reply("one")) == AsyncCalls::Delivery::kDelivered);
    CHECK(calls->deliver("a", ok_reply("two")) == AsyncCalls::Delivery::kDuplicate);
    CHECK(c.calls == 1);
    CHECK(c.reply.output == "one");
    CHECK(calls->orphans() == 0);
  }
  SECTION("a reply that came first is handed over at once") {
    CHECK(calls->deliver("b", ok_reply("early")) == AsyncCalls::Delivery::kOrphan);
    Captured c;
    CHECK_FALSE(calls->begin("b", clock->steady_now() + 10s, nullptr, capture(&c)));
    CHECK(c.calls == 1);
    CHECK(c.reply.output == "early");
    CHECK(calls->waiting() == 0);
  }
  SECTION("the deadline fails the call with the protocol's message") {
    Captured c;
    std::string timed_out;
    calls->set_on_timeout([&](const std::string& id) { timed_out = id; });
    calls->begin("c", clock->steady_now() + 1s, [] { return std::string("no reply from w"); }, capture(&c));
    clock->advance(999ms);
    CHECK(c.calls == 1);  // a little early, ahead of the engine's timer
    CHECK(c.reply.status.code() == StatusCode::kDeadlineExceeded);
    CHECK(c.reply.status.message() == "no reply from w");
    CHECK(timed_out == "c");
    // The late reply is kept (a retry of the same call id could use it).
    CHECK(calls->deliver("c", ok_reply("late")) == AsyncCalls::Delivery::kOrphan);
  }
  SECTION("cancel says whether the deadline had passed") {
    Captured c;
    calls->begin("d", clock->steady_now() + 1s, nullptr, capture(&c));
    auto cancelled = calls->cancel("d");
    CHECK(cancelled.was_waiting);
    CHECK_FALSE(cancelled.past_deadline);
    CHECK(c.reply.status.code() == StatusCode::kCancelled);
    CHECK_FALSE(calls->cancel("d").was_waiting);
  }
  SECTION("orphans expire") {
    calls->deliver("e", ok_reply("x"));
    clock->advance(30s);
    CHECK(calls->expire_orphans().empty());
    clock->advance(31s);
    CHECK(calls->expire_orphans() == std::vector<std::string>{"e"});
    CHECK(calls->orphans() == 0);
  }
  SECTION("dispatching a waiting call again supersedes the first") {
    Captured first, second;
    calls->begin("f", clock->steady_now() + 10s, nullptr, capture(&first));
    calls->begin("f", clock->steady_now() + 10s, nullptr, capture(&second));
    CHECK(first.reply.status.code() == StatusCode::kCancelled);
    calls->deliver("f", ok_reply("ok"));
    CHECK(second.reply.output == "ok");
  }
}

TEST_CASE("call ledger: survives reopening, forgets answered and stale calls", "[async]") {
  const std::string dir = orch::testing::make_temp_dir("ledger");
  const std::string path = dir + "/mqtt-x.pending";
  {
    auto ledger = CallLedger::open(path, 1000, 60000);
    REQUIRE(ledger.ok());
    (*ledger)->add("a#1.1", 1000);
    (*ledger)->add("b#1.1", 1000);
    (*ledger)->add("old#1.1", 1000);
    (*ledger)->remove("b#1.1");
    CHECK((*ledger)->contains("a#1.1"));
    CHECK_FALSE((*ledger)->contains("b#1.1"));
    // Private to its user, whatever the umask (SPEC §12).
    const auto perms = std::filesystem::status(path).permissions();
    CHECK((perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all)) ==
          std::filesystem::perms::none);
  }
  {
    auto ledger = CallLedger::open(path, 2000, 60000);
    REQUIRE(ledger.ok());
    CHECK((*ledger)->size() == 2);
    CHECK((*ledger)->contains("a#1.1"));
    CHECK_FALSE((*ledger)->contains("b#1.1"));
  }
  {
    auto ledger = CallLedger::open(path, 100000, 60000);  // everything is stale now
    REQUIRE(ledger.ok());
    CHECK((*ledger)->size() == 0);
  }
  auto bad = CallLedger::open("/proc/no/such/dir/x.pending", 0, 1000);
  CHECK_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

TEST_CASE("registry: mqtt and redis_stream are built in and check their urls", "[async]") {
  orch::WorkerRegistry registry;
  REQUIRE(orch::register_async_protocols(registry, {}).ok());
  auto names = registry.protocol_names();
  CHECK(std::find(names.begin(), names.end(), "mqtt") != names.end());
  CHECK(std::find(names.begin(), names.end(), "redis_stream") != names.end());
  WorkerInfo w;
  w.id = "m";
  w.protocol = "mqtt";
  w.url = "mqtt://127.0.0.1:1883";
  Status s = registry.add_worker(w);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(s.message().find("invalid mqtt:// URL") == 0);
  w.url = "mqtt://127.0.0.1:1883/jobs";
  CHECK(registry.add_worker(w).ok());
  w.id = "r";
  w.protocol = "redis_stream";
  w.url = "mqtt://127.0.0.1:6379/jobs";
  CHECK(registry.add_worker(w).message().find("invalid redis:// URL") == 0);
  w.url = "redis://127.0.0.1:6379/jobs";
  CHECK(registry.add_worker(w).ok());

  orch::AsyncWorkerOptions bad;
  bad.instance = "has space";
  CHECK(orch::register_async_protocols(registry, bad).code() == StatusCode::kInvalidArgument);
  bad.instance = "ok";
  bad.state_dir = "/proc/no/such/dir";
  CHECK(orch::register_async_protocols(registry, bad).code() == StatusCode::kFailedPrecondition);
}

TEST_CASE("an unreachable broker fails the call at its deadline, saying so", "[async]") {
  const int closed_port = orch::testing::free_loopback_port();
  auto registry = orch::test::builtin_registry();
  WorkerInfo mq;
  mq.id = "mq";
  mq.protocol = "mqtt";
  mq.url = "mqtt://127.0.0.1:" + std::to_string(closed_port) + "/jobs";
  mq.tags = {"mq"};
  REQUIRE(registry->add_worker(mq).ok());
  WorkerInfo rs;
  rs.id = "rs";
  rs.protocol = "redis_stream";
  rs.url = "redis://127.0.0.1:" + std::to_string(closed_port) + "/jobs";
  rs.tags = {"rs"};
  REQUIRE(registry->add_worker(rs).ok());
  for (const char* tag : {"mq", "rs"}) {
    WorkerRequest req;
    req.call_id = std::string("call-") + tag + "#1.1";
    req.run_id = "run";
    req.node_name = "n";
    req.prompt = "p";
    req.deadline = orch::Clock::system()->steady_now() + 400ms;
    req.worker_tags = {tag};
    const auto start = std::chrono::steady_clock::now();
    WorkerReply reply = orch::testing::dispatch_and_wait(*registry, req, 5s);
    const auto took = std::chrono::steady_clock::now() - start;
    INFO(reply.status.message());
    CHECK(reply.status.code() == StatusCode::kDeadlineExceeded);
    CHECK(reply.status.message().find("no reply from worker " + std::string(tag)) != std::string::npos);
    CHECK(reply.status.message().find("unreachable") != std::string::npos);
    CHECK(took >= 350ms);
    CHECK(took < 3s);
  }
}
