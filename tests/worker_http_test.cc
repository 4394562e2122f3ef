// SPDX-License-Identifier: MIT
// HTTP worker protocols end to end: the engine runs workflows whose nodes go
// through the WorkerRegistry to fake workers on loopback (issue: workers).
#include <chrono>
#include <thread>

#include "catch.h"
#include "orch/engine.h"
#include "orch/worker_registry.h"
#include "support/engine_fixture.h"
#include "support/fake_workers.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::RunStatus;
using orch::Status;
using orch::StatusCode;
using orch::Value;
using orch::WorkerInfo;
using orch::testing::FakeReply;
using orch::testing::FakeWorker;
using orch::testing::json;
using orch::testing::make_engine;
using orch::testing::make_workflow;
using orch::testing::run_to_end;

namespace {

WorkerInfo worker(const std::string& id, const std::string& url, const std::string& protocol,
                  std::vector<std::string> tags = {}, int max_concurrent = 1) {
  WorkerInfo w;
  w.id = id;
  w.url = url;
  w.protocol = protocol;
  w.tags = std::move(tags);
  w.max_concurrent = max_concurrent;
  return w;
}

// The step rows of node `node` in run `run_id`, oldest first.
std::vector<orch::StepRecord> steps_of(orch::Engine& engine, const std::string& run_id, const std::string& node) {
  std::vector<orch::StepRecord> out;
  auto steps = engine.store()->list_steps(run_id);
  REQUIRE(steps.ok());
  for (const auto& s : *steps) {
    if (s.node_name == node) out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.created_at_ms < b.created_at_ms; });
  return out;
}

const char* kOneTask = R"({"nodes": {"t": {"prompt_template": "hello {{input.name}}", "output_key": "answer"}},
  "edges": [["__start__","t"],["t","__end__"]], "state_schema": {"answer": {"type": "string"}}})";

}  // namespace

TEST_CASE("webhook: the exact request, the bearer token, the output in state", "[http]") {
  FakeWorker fake(FakeWorker::Format::kWebhook);
  auto registry = orch::test::builtin_registry();
  WorkerInfo w = worker("hook", fake.url(), "webhook");
  w.token = "s3cret";
  REQUIRE(registry->add_worker(w).ok());
  auto engine = make_engine(registry);
  auto r = run_to_end(*engine, make_workflow(kOneTask), json(R"({"name":"bob"})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["answer"].as_string() == "echo: hello bob");

  auto calls = fake.calls();
  REQUIRE(calls.size() == 1);
  auto steps = steps_of(*engine, r.id, "t");
  REQUIRE(steps.size() == 1);
  const std::string key = "run_" + r.id + "_step_" + steps[0].id;
  CHECK(calls[0].method == "POST");
  CHECK(calls[0].path == "/webhook");
  CHECK(calls[0].header("authorization") == "Bearer s3cret");
  CHECK(calls[0].header("content-type") == "application/json");
  CHECK(calls[0].body == R"({"message":"hello bob","text":"hello bob","session_key":")" + key +
                             R"(","session_id":")" + key + R"("})");
  CHECK(steps[0].worker_id == "hook");
  auto status = *registry->get_worker("hook");
  CHECK(status.calls == 1);
  CHECK(status.in_flight == 0);
}

TEST_CASE("api_chat: no token, no Authorization, state_updates and goto steer the run", "[http]") {
  FakeWorker fake(FakeWorker::Format::kApiChat);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("chat", fake.url(), "api_chat")).ok());
  FakeReply reply = FakeReply::with_text("decided");
  reply.fields = json(R"({"state_updates": {"score": 7}, "goto": "b"})");
  fake.push(reply);
  auto engine = make_engine(registry);
  auto wf = make_workflow(R"({"nodes": {
      "t": {"prompt_template": "pick"},
      "a": {"type": "transform", "updates": {"path": "a"}},
      "b": {"type": "transform", "updates": {"path": "b"}}},
    "edges": [["__start__","t"],["t","a"],["a","__end__"],["b","__end__"]]})");
  auto r = run_to_end(*engine, wf);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["score"].as_int() == 7);
  CHECK(r.state["path"].as_string() == "b");
  auto calls = fake.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].path == "/api/chat");
  CHECK(calls[0].header("authorization").empty());
  auto steps = steps_of(*engine, r.id, "t");
  REQUIRE(steps.size() == 1);
  CHECK(calls[0].body == R"({"message":"pick","session_id":"run_)" + r.id + "_step_" + steps[0].id + R"("})");
}

TEST_CASE("openai_chat: exact body, content into state, token usage and rate limits", "[http]") {
  FakeWorker fake(FakeWorker::Format::kOpenAiChat);
  auto registry = orch::test::builtin_registry();
  WorkerInfo w = worker("gpt", fake.url(), "openai_chat");
  w.model = "gpt-test";
  w.token = "sk-1";
  REQUIRE(registry->add_worker(w).ok());
  FakeReply reply = FakeReply::with_text("four");
  reply.fields = json(R"({"usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}})");
  reply.headers = {{"x-ratelimit-limit-requests", "500"}, {"x-ratelimit-remaining-requests", "499"}};
  fake.push(reply);
  auto engine = make_engine(registry);
  auto r = run_to_end(*engine, make_workflow(kOneTask), json(R"({"name":"2+2"})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["answer"].as_string() == "four");
  CHECK(r.input_tokens == 13);
  CHECK(r.output_tokens == 5);
  auto calls = fake.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].path == "/v1/chat/completions");
  CHECK(calls[0].header("authorization") == "Bearer sk-1");
  CHECK(calls[0].body == R"({"model":"gpt-test","stream":false,"messages":[{"role":"user","content":"hello 2+2"}]})");
  auto limits = registry->rate_limits();
  REQUIRE(limits.size() == 1);
  CHECK(limits[0].worker_id == "gpt");
  CHECK(limits[0].remaining == 499);
  CHECK(limits[0].limit == 500);
}

TEST_CASE("a2a: an agent asks for input, continues the task, and completes", "[http]") {
  FakeWorker fake(FakeWorker::Format::kA2a);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("agent", fake.url(), "a2a")).ok());
  REQUIRE(registry->add_worker(worker("hook", "http://127.0.0.1:9/never", "webhook")).ok());
  FakeReply ask = FakeReply::with_text("which topic?");
  ask.a2a_state = "input-required";
  fake.push(ask);
  fake.push(FakeReply::with_text("the plan"));
  auto engine = make_engine(registry);
  auto wf = make_workflow(R"({"nodes": {"ask": {"type": "agent", "prompt_template": "plan {{input.topic}}",
      "continuation_prompt": "go on", "max_turns": 5, "output_key": "plan"}},
    "edges": [["__start__","ask"],["ask","__end__"]], "state_schema": {"plan": {"type": "string"}}})");
  auto r = run_to_end(*engine, wf, json(R"({"topic":"x"})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["plan"].as_string() == "the plan");

  auto calls = fake.calls();
  REQUIRE(calls.size() == 2);  // completed ends the turns before max_turns
  auto steps = steps_of(*engine, r.id, "ask");
  REQUIRE(!steps.empty());
  const std::string key = "run_" + r.id + "_step_" + steps[0].id;
  for (const auto& c : calls) {
    CHECK(c.path == "/a2a");
    CHECK(c.json["jsonrpc"].as_string() == "2.0");
    CHECK(c.json["method"].as_string() == "message/send");
    CHECK(c.json.find_path("params.message.role")->as_string() == "user");
    CHECK(c.json.find_path("params.message.contextId")->as_string() == key);
  }
  CHECK(calls[0].json.find_path("params.message.parts")->to_json() == R"([{"kind":"text","text":"plan x"}])");
  CHECK_FALSE(calls[0].json.find_path("params.message.taskId"));
  CHECK(calls[1].json.find_path("params.message.parts")->to_json() == R"([{"kind":"text","text":"go on"}])");
  CHECK(calls[1].json.find_path("params.message.taskId")->as_string() == "task-1");
}

TEST_CASE("a2a: a JSON-RPC error fails the node with the agent's message", "[http]") {
  FakeWorker fake(FakeWorker::Format::kA2a);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("agent", fake.url(), "a2a")).ok());
  FakeReply err;
  err.a2a_error = json(R"({"code": -32603, "message": "Agent processing failed"})");
  fake.push(err);
  auto engine = make_engine(registry);
  auto r = run_to_end(*engine, make_workflow(kOneTask), json(R"({"name":"x"})"));
  REQUIRE(r.status == RunStatus::kFailed);
  CHECK(r.error.find("Agent processing failed") != std::string::npos);
}

TEST_CASE("429 with Retry-After is retried after the delay the worker asked for", "[http]") {
  FakeWorker fake(FakeWorker::Format::kWebhook);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("w", fake.url(), "webhook")).ok());
  FakeReply limited = FakeReply::failing(429, R"({"error":{"message":"slow down","code":"rate_limit_exceeded"}})");
  limited.headers = {{"Retry-After", "1"}};
  fake.push(limited);
  auto engine = make_engine(registry);
  // The back-off alone would wait a minute; Retry-After says one second.
  auto wf = make_workflow(R"({"nodes": {"t": {"prompt_template": "hi", "output_key": "answer",
      "retry": {"max_attempts": 2, "initial_interval_ms": 60000}}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto start = std::chrono::steady_clock::now();
  auto r = run_to_end(*engine, wf);
  auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["answer"].as_string() == "echo: hi");
  CHECK(fake.calls().size() == 2);
  CHECK(elapsed >= 900ms);
  CHECK(registry->get_worker("w")->circuit == orch::CircuitState::kClosed);
}

TEST_CASE("insufficient_quota and other 4xx are not retried, 5xx is", "[http]") {
  FakeWorker fake(FakeWorker::Format::kWebhook);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("w", fake.url(), "webhook")).ok());
  auto engine = make_engine(registry);
  auto wf = make_workflow(R"({"nodes": {"t": {"prompt_template": "hi",
      "retry": {"max_attempts": 3, "initial_interval_ms": 1}}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  SECTION("insufficient_quota") {
    fake.push(FakeReply::failing(429, R"({"error":{"message":"quota","type":"insufficient_quota"}})"));
    auto r = run_to_end(*engine, wf);
    REQUIRE(r.status == RunStatus::kFailed);
    CHECK(r.error.find("HTTP 429: quota") != std::string::npos);
    CHECK(fake.calls().size() == 1);
  }
  SECTION("400") {
    fake.push(FakeReply::failing(400));
    auto r = run_to_end(*engine, wf);
    REQUIRE(r.status == RunStatus::kFailed);
    CHECK(r.error.find("HTTP 400: fake failure") != std::string::npos);
    CHECK(fake.calls().size() == 1);
  }
  SECTION("500 then success") {
    fake.push(FakeReply::failing(500));
    auto r = run_to_end(*engine, wf);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(fake.calls().size() == 2);
  }
}

TEST_CASE("a worker that refuses connections fails retryably and trips its circuit", "[http]") {
  int port;
  {
    FakeWorker gone(FakeWorker::Format::kWebhook, 1);
    port = gone.port();
  }
  orch::WorkerRegistryOptions options;
  options.failure_threshold = 2;
  auto registry = orch::test::builtin_registry(options);
  REQUIRE(registry->add_worker(worker("w", "http://127.0.0.1:" + std::to_string(port) + "/hook", "webhook")).ok());
  orch::WorkerRequest req;
  req.call_id = "c1";
  req.node_name = "n";
  req.deadline = std::chrono::steady_clock::now() + 5s;
  auto reply = orch::testing::dispatch_and_wait(*registry, req);
  CHECK(reply.status.code() == StatusCode::kUnavailable);
  CHECK(reply.status.message().find("HTTP request failed") == 0);
  CHECK(reply.retryable);
  req.call_id = "c2";
  (void)orch::testing::dispatch_and_wait(*registry, req);
  CHECK(registry->get_worker("w")->circuit == orch::CircuitState::kOpen);
}

TEST_CASE("max_concurrent 2: never more than 2 calls in flight at the worker", "[http]") {
  FakeWorker fake(FakeWorker::Format::kWebhook);
  FakeReply slow;
  slow.delay_ms = 60;
  fake.set_default(slow);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("w", fake.url(), "webhook", {}, 2)).ok());
  auto engine = make_engine(registry);
  auto wf = make_workflow(R"({"nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "work", "output_key": "results"},
      "work": {"type": "task", "prompt_template": "item {{item}}"}},
    "edges": [["__start__","fan"],["fan","__end__"]],
    "state_schema": {"items": {"type": "array"}, "results": {"type": "array"}}})");
  auto r = run_to_end(*engine, wf, json(R"({"items": [0,1,2,3,4,5,6,7]})"));
  REQUIRE(r.status == RunStatus::kCompleted);
  REQUIRE(r.state["results"].size() == 8);
  for (int i = 0; i < 8; ++i) CHECK(r.state["results"].at(i)->as_string() == "echo: item " + std::to_string(i));
  CHECK(fake.calls().size() == 8);
  CHECK(fake.max_in_flight() == 2);
  CHECK(registry->queued_calls() == 0);
}

TEST_CASE("a hung worker times out without holding up other runs", "[http]") {
  FakeWorker hung(FakeWorker::Format::kWebhook);
  FakeReply never;
  never.hang = true;
  hung.set_default(never);
  FakeWorker fast(FakeWorker::Format::kWebhook);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("slow", hung.url(), "webhook", {"slow"})).ok());
  REQUIRE(registry->add_worker(worker("fast", fast.url(), "webhook", {"fast"})).ok());
  auto engine = make_engine(registry);
  auto stuck = make_workflow(R"({"nodes": {"t": {"prompt_template": "wait", "worker_tags": ["slow"], "timeout_ms": 1500}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto quick = make_workflow(R"({"nodes": {"t": {"prompt_template": "go", "worker_tags": ["fast"], "output_key": "o"}},
    "edges": [["__start__","t"],["t","__end__"]]})");
  auto stuck_id = *engine->start_run(stuck, {});
  REQUIRE(hung.wait_for_calls(1, 5s));
  for (int i = 0; i < 3; ++i) {
    auto r = run_to_end(*engine, quick);
    REQUIRE(r.status == RunStatus::kCompleted);
    CHECK(r.state["o"].as_string() == "echo: go");
  }
  CHECK(engine->get_run(stuck_id)->status == RunStatus::kRunning);
  auto r = engine->wait(stuck_id, 10s);
  REQUIRE(r->status == RunStatus::kFailed);
  // The engine's deadline timer and the transport's own cut race for the same
  // moment: the engine names the 1500 ms deadline, the transport the time that
  // was left when it sent (a few ms less under load).
  CHECK((r->error.find("timed out after 1500 ms") != std::string::npos ||
         r->error.find("worker did not answer within 1") != std::string::npos));
  // The engine's cancel cut the connection: the worker's slot is free at once.
  for (int i = 0; i < 200 && registry->get_worker("slow")->in_flight > 0; ++i) std::this_thread::sleep_for(5ms);
  CHECK(registry->get_worker("slow")->in_flight == 0);
  hung.release();
}

TEST_CASE("the registry cuts a call at its deadline on its own", "[http]") {
  FakeWorker hung(FakeWorker::Format::kWebhook);
  FakeReply never;
  never.hang = true;
  hung.set_default(never);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("w", hung.url(), "webhook")).ok());
  orch::WorkerRequest req;
  req.call_id = "c1";
  req.node_name = "n";
  req.deadline = std::chrono::steady_clock::now() + 200ms;
  auto start = std::chrono::steady_clock::now();
  auto reply = orch::testing::dispatch_and_wait(*registry, req);
  CHECK(reply.status.code() == StatusCode::kDeadlineExceeded);
  CHECK(reply.retryable);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(registry->get_worker("w")->consecutive_failures == 1);  // a timeout is the worker's failure
  hung.release();
}

TEST_CASE("keep-alive: sequential calls reuse one connection", "[http]") {
  FakeWorker fake(FakeWorker::Format::kWebhook);
  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(worker("w", fake.url(), "webhook")).ok());
  orch::WorkerRequest req;
  req.node_name = "n";
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    req.call_id = "c" + std::to_string(i);
    req.deadline = std::chrono::steady_clock::now() + 5s;
    REQUIRE(orch::testing::dispatch_and_wait(*registry, req).status.ok());
  }
  // Without TCP_NODELAY each small POST on a kept-alive connection waits ~40 ms.
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  for (const auto& c : fake.calls()) CHECK(c.header("connection") != "close");
}

TEST_CASE("health checks probe with GET, any status below 500 is healthy", "[http]") {
  FakeWorker fake(FakeWorker::Format::kA2a);
  orch::WorkerRegistryOptions options;
  auto clock = std::make_shared<orch::ManualClock>();
  options.clock = clock;
  auto registry = orch::test::builtin_registry(options);
  REQUIRE(registry->add_worker(worker("a", fake.url(), "a2a")).ok());
  fake.set_health_status(404);
  registry->check_health();
  auto gets = fake.requests();
  REQUIRE(gets.size() == 1);
  CHECK(gets[0].method == "GET");
  CHECK(gets[0].path == "/a2a");
  CHECK(registry->get_worker("a")->consecutive_failures == 0);
  fake.set_health_status(500);
  for (int i = 0; i < 3; ++i) registry->check_health();
  CHECK(registry->get_worker("a")->circuit == orch::CircuitState::kOpen);
  CHECK(registry->get_worker("a")->last_error == "health check: HTTP 500");
  fake.set_health_status(200);
  clock->advance(60s);
  registry->check_health();
  CHECK(registry->get_worker("a")->circuit == orch::CircuitState::kClosed);
}
