// SPDX-License-Identifier: MIT
// redis_stream with several orch instances sharing runs (issue #21,
// AsyncWorkerOptions::shared_runs), against a real redis-server: an instance
// that takes a call over from another waits for the reply to the request
// already sent (on the other instance's reply stream) instead of sending it
// again, and an instance that reads a reply for a call another instance now
// owns passes it on to that instance's reply stream.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/async_workers.h"
#include "orch/clock.h"
#include "workers/async/mqtt_call_routes.h"
#include "workers/async/redis_call_routes.h"
#include "workers/async/redis_client.h"
#include "support/broker_workers.h"
#include "support/brokers.h"
#include "support/test_helpers.h"

using namespace std::chrono_literals;
using orch::WorkerInfo;
using orch::WorkerReply;

namespace {

#define ORCH_SKIP(msg)                                      \
  do {                                                      \
    std::fprintf(stderr, "%s\n", std::string(msg).c_str()); \
    WARN(msg);                                              \
    return;                                                 \
  } while (0)

std::shared_ptr<orch::WorkerProtocol> shared_protocol(const std::string& instance) {
  orch::AsyncWorkerOptions async;
  async.instance = instance;
  async.shared_runs = true;
  auto protocol = orch::new_redis_stream_protocol(async);
  REQUIRE(protocol.ok());
  return *protocol;
}

orch::WorkerRequest request_for(const std::string& call_id) {
  orch::WorkerRequest req;
  req.call_id = call_id;
  req.run_id = "r";
  req.node_name = "t";
  req.prompt = "hello";
  req.deadline = orch::Clock::system()->steady_now() + 30s;
  return req;
}

// A call whose reply the test waits for.
struct PendingCall {
  std::shared_ptr<std::promise<WorkerReply>> promise = std::make_shared<std::promise<WorkerReply>>();
  std::future<WorkerReply> future = promise->get_future();

  void start(orch::WorkerProtocol& protocol, const WorkerInfo& worker, const orch::WorkerRequest& req) {
    auto p = promise;
    protocol.call(worker, req, [p](WorkerReply reply) { p->set_value(std::move(reply)); });
  }
  bool answered(std::chrono::milliseconds within) { return future.wait_for(within) == std::future_status::ready; }
};

struct RawRedis {
  explicit RawRedis(int port) {
    auto c = orch::internal::RedisClient::connect("127.0.0.1", port, 2s, 2s);
    REQUIRE(c.ok());
    client = std::move(c).value();
  }
  orch::internal::RedisValue run(std::vector<std::string> args) {
    auto r = client->command(args);
    REQUIRE(r.ok());
    return *r;
  }
  orch::internal::SigpipeGuard sigpipe;
  std::unique_ptr<orch::internal::RedisClient> client;
};

}  // namespace

TEST_CASE("redis_stream: the instance that takes a call over reads the reply to the request another instance sent", "[redis][async]") {
  if (!orch::testing::RedisBroker::available()) ORCH_SKIP("skipped: redis-server is not installed");
  orch::testing::RedisBroker broker;
  orch::testing::RedisTestWorker worker(broker.port(), "orch:work");
  REQUIRE(worker.wait_ready(10s));
  worker.hold(true);
  WorkerInfo w;
  w.id = "rs";
  w.protocol = "redis_stream";
  w.url = "redis://127.0.0.1:" + std::to_string(broker.port()) + "/orch:work";
  const std::string pid = std::to_string(::getpid());
  const std::string call_id = "step-take#1.1";

  // Instance A publishes the request, then goes away before the worker replies.
  auto a = shared_protocol("sa-" + pid);
  a->attach(w);
  PendingCall on_a;
  on_a.start(*a, w, request_for(call_id));
  if (on_a.answered(0ms)) FAIL("A's call ended: " << on_a.future.get().status.to_string());
  REQUIRE(worker.wait_for_requests(1, 10s));
  a.reset();
  REQUIRE(on_a.answered(5s));
  CHECK_FALSE(on_a.future.get().status.ok());  // shut down, not answered

  // Instance B dispatches the same call (it took the run over): the worker
  // answers A's request, on A's reply stream, and B gets that reply.
  auto b = shared_protocol("sb-" + pid);
  b->attach(w);
  PendingCall on_b;
  on_b.start(*b, w, request_for(call_id));
  worker.release_held();
  REQUIRE(on_b.answered(20s));
  WorkerReply reply = on_b.future.get();
  INFO(reply.status.to_string());
  CHECK(reply.status.ok());
  CHECK(reply.output == "echo: hello");
  CHECK(worker.requests().size() == 1);  // never sent twice

  // The reply is taken off A's stream and nothing of the call stays behind.
  RawRedis redis(broker.port());
  CHECK(orch::testing::eventually([&] { return redis.run({"XLEN", "orch:replies:sa-" + pid}).integer == 0; }));
  CHECK(orch::testing::eventually([&] { return redis.run({"EXISTS", "orch:call:" + call_id}).integer == 0; }));
  CHECK(orch::testing::eventually([&] { return redis.run({"HEXISTS", "orch:pending:sa-" + pid, call_id}).integer == 0; }));
  CHECK(orch::testing::eventually([&] { return redis.run({"HEXISTS", "orch:pending:sb-" + pid, call_id}).integer == 0; }));
  b->detach(w);
}

TEST_CASE("redis_stream: a reply for a call another instance now owns is passed on to that instance", "[redis][async]") {
  if (!orch::testing::RedisBroker::available()) ORCH_SKIP("skipped: redis-server is not installed");
  orch::testing::RedisBroker broker;
  orch::testing::RedisTestWorker worker(broker.port(), "orch:work");
  REQUIRE(worker.wait_ready(10s));
  worker.hold(true);
  WorkerInfo w;
  w.id = "rs";
  w.protocol = "redis_stream";
  w.url = "redis://127.0.0.1:" + std::to_string(broker.port()) + "/orch:work";
  const std::string pid = std::to_string(::getpid());
  const std::string call_id = "step-pass#1.1";
  const std::string a_name = "pa-" + pid, b_name = "pb-" + pid;

  // A still waits for its call (e.g. it was paused and lost the run), while
  // the call's route already names B as the owner.
  auto a = shared_protocol(a_name);
  a->attach(w);
  PendingCall on_a;
  on_a.start(*a, w, request_for(call_id));
  REQUIRE(worker.wait_for_requests(1, 10s));
  RawRedis redis(broker.port());
  REQUIRE(orch::testing::eventually([&] { return redis.run({"EXISTS", "orch:call:" + call_id}).integer == 1; }));
  const std::string deadline = std::to_string(orch::Clock::system()->now_ms() + 30000);
  redis.run({"SET", "orch:call:" + call_id, b_name + " " + a_name + " " + deadline});

  // The reply reaches A, which passes it on to B's reply stream.
  worker.release_held();
  CHECK(orch::testing::eventually([&] { return redis.run({"XLEN", "orch:replies:" + b_name}).integer == 1; }));
  CHECK(orch::testing::eventually([&] { return redis.run({"XLEN", "orch:replies:" + a_name}).integer == 0; }));
  CHECK_FALSE(on_a.answered(0ms));  // A's stale call did not take it

  // B takes the call: it gets the passed-on reply, and nothing is sent again.
  auto b = shared_protocol(b_name);
  b->attach(w);
  PendingCall on_b;
  on_b.start(*b, w, request_for(call_id));
  REQUIRE(on_b.answered(20s));
  WorkerReply reply = on_b.future.get();
  INFO(reply.status.to_string());
  CHECK(reply.status.ok());
  CHECK(reply.output == "echo: hello");
  CHECK(worker.requests().size() == 1);
  a.reset();
  REQUIRE(on_a.answered(5s));
  CHECK_FALSE(on_a.future.get().status.ok());

  // Hostile routes are ignored: the call is sent as usual.
  redis.run({"SET", "orch:call:step-bad#1.1", "not a route at all"});
  PendingCall bad;
  worker.hold(false);
  bad.start(*b, w, request_for("step-bad#1.1"));
  REQUIRE(bad.answered(20s));
  CHECK(bad.future.get().status.ok());
  CHECK(worker.requests().size() == 2);
  b->detach(w);
}

namespace {

std::shared_ptr<orch::WorkerProtocol> shared_mqtt_protocol(const std::string& instance) {
  orch::AsyncWorkerOptions async;
  async.instance = instance;
  async.shared_runs = true;
  auto protocol = orch::new_mqtt_protocol(async);
  REQUIRE(protocol.ok());
  return *protocol;
}

}  // namespace

TEST_CASE("mqtt: the instance that takes calls over gets the replies to the requests another instance sent", "[mqtt][async]") {
  if (!orch::testing::MosquittoBroker::available()) ORCH_SKIP("skipped: mosquitto is not installed");
  orch::testing::MosquittoBroker broker;
  orch::testing::MqttTestWorker worker(broker.port(), "work/jobs");
  REQUIRE(worker.wait_subscribed(10s));
  worker.hold(true);
  WorkerInfo w;
  w.id = "mq";
  w.protocol = "mqtt";
  w.url = "mqtt://127.0.0.1:" + std::to_string(broker.port()) + "/work/jobs";
  const std::string pid = std::to_string(::getpid());

  // Instance A publishes two requests, then goes away before the worker replies.
  auto a = shared_mqtt_protocol("ma-" + pid);
  a->attach(w);
  PendingCall a1, a2;
  a1.start(*a, w, request_for("step-early#1.1"));
  a2.start(*a, w, request_for("step-late#1.1"));
  REQUIRE(worker.wait_for_requests(2, 10s));
  a.reset();
  REQUIRE(a1.answered(5s));
  REQUIRE(a2.answered(5s));

  // Instance B (connected, so it hears every instance's replies) takes one
  // call over before the worker replies and the other after.
  auto b = shared_mqtt_protocol("mb-" + pid);
  b->attach(w);
  REQUIRE(b->probe(w, 10s).ok());
  PendingCall late;
  late.start(*b, w, request_for("step-late#1.1"));
  worker.release_held();
  REQUIRE(late.answered(20s));
  WorkerReply reply = late.future.get();
  INFO(reply.status.to_string());
  CHECK(reply.status.ok());
  CHECK(reply.output == "echo: hello");
  PendingCall early;
  early.start(*b, w, request_for("step-early#1.1"));
  REQUIRE(early.answered(20s));
  reply = early.future.get();
  INFO(reply.status.to_string());
  CHECK(reply.status.ok());
  CHECK(reply.output == "echo: hello");
  CHECK(worker.requests().size() == 2);  // neither request was sent again
  b->detach(w);
}

TEST_CASE("call routes: formatted, parsed, and hostile text refused", "[async]") {
  using orch::internal::CallRoute;
  using orch::internal::parse_call_route;
  CallRoute route{"orch-b", "host-1.a_b", 1234567};
  auto parsed = parse_call_route(orch::internal::format_call_route(route));
  REQUIRE(parsed);
  CHECK(parsed->owner == "orch-b");
  CHECK(parsed->origin == "host-1.a_b");
  CHECK(parsed->deadline_ms == 1234567);
  for (const char* bad : {"", "a", "a b", "a b c", "a b 12x", "a b  12", "a/x b 12", "a b 99999999999999999999",
                          "a  b 12", " a b 12", "a b 12 "}) {
    INFO(bad);
    CHECK_FALSE(parse_call_route(bad));
  }
  CHECK_FALSE(parse_call_route(std::string(300, 'a') + " b 1"));
  CHECK_FALSE(parse_call_route(std::string(65, 'a') + " b 1"));
}

TEST_CASE("call routes: MQTT topics encode the call id and decode only what they encode", "[async]") {
  using orch::internal::call_id_of_route_topic;
  using orch::internal::mqtt_route_topic;
  for (const std::string& id :
       std::vector<std::string>{"step-1#1.1", "a/b+c#d", "x%y", std::string("nul\0byte", 8), "~ready~me"}) {
    const std::string topic = mqtt_route_topic(id);
    INFO(topic);
    CHECK(topic.find_first_of("#+", 0) == std::string::npos);
    CHECK(topic.find('/', 11) == std::string::npos);
    auto back = call_id_of_route_topic(topic);
    REQUIRE(back);
    CHECK(*back == id);
  }
  for (const char* bad : {"orch/calls/", "orch/calls/a%", "orch/calls/a%4", "orch/calls/a%zz", "orch/calls/a/b",
                          "orch/replies/x", "orch/calls/a#"}) {
    INFO(bad);
    CHECK_FALSE(call_id_of_route_topic(bad));
  }
}

TEST_CASE("call routes: the route book and the watches stay bounded", "[async]") {
  orch::internal::MqttRouteBook book(100);
  for (int i = 0; i < 1000; ++i) book.heard("c" + std::to_string(i), "o" + std::to_string(i) + " x 5000", 1000);
  CHECK(book.size() <= 100);
  book.heard("c-new", "owner origin 9000", 1000);
  REQUIRE(book.find("c-new"));
  book.heard("c-new", "", 1000);  // cleared
  CHECK_FALSE(book.find("c-new"));
  book.heard("c-junk", "not a route", 1000);
  CHECK_FALSE(book.find("c-junk"));

  orch::internal::CallWatches watches(10);
  for (int i = 0; i < 100; ++i) watches.add("c" + std::to_string(i), "origin", 5000);
  CHECK(watches.contains("origin", "c99"));
  CHECK_FALSE(watches.contains("origin", "c0"));  // the oldest went
  CHECK_FALSE(watches.contains("other", "c99"));
  CHECK(watches.origins(4000) == std::vector<std::string>{"origin"});
  CHECK(watches.origins(6000).empty());  // past their deadline
  CHECK(watches.empty());
}
