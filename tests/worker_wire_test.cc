// SPDX-License-Identifier: MIT
// Wire formats of the HTTP worker protocols, through the registry and a fake
// worker on loopback: request bodies and URLs, reply parsing (NullBoiler
// §7.9), HTTP failures, A2A v0.3 / v1.0 results.
#include <chrono>

#include "catch.h"
#include "orch/id.h"
#include "orch/worker_registry.h"
#include "support/fake_workers.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::Status;
using orch::StatusCode;
using orch::Value;
using orch::WorkerInfo;
using orch::WorkerReply;
using orch::WorkerRequest;
using orch::testing::FakeReply;
using orch::testing::FakeWorker;

namespace {

// 2024-01-01T00:00:00Z
constexpr int64_t kNowMs = 1704067200000;

// A registry with one worker in front of one fake.
struct Wire {
  explicit Wire(FakeWorker::Format format, const std::string& protocol, const std::string& model = "",
                const std::string& url_suffix = "")
      : fake(format, 4),
        clock(std::make_shared<orch::ManualClock>(orch::WallTime(std::chrono::milliseconds(kNowMs)))) {
    orch::WorkerRegistryOptions options;
    options.clock = clock;
    options.failure_threshold = 1000000;  // every reply here reaches the worker
    registry = orch::test::builtin_registry(options);
    WorkerInfo w;
    w.id = "w";
    w.url = fake.url() + url_suffix;
    w.protocol = protocol;
    w.model = model;
    Status s = registry->add_worker(w);
    REQUIRE(s.ok());
  }

  WorkerRequest request(const std::string& prompt) {
    WorkerRequest r;
    r.call_id = "step-1#1.1";
    r.run_id = "run-1";
    r.node_name = "n";
    r.node_type = "task";
    r.prompt = prompt;
    r.session_id = "run_run-1_step_step-1";
    r.deadline = clock->steady_now() + 10s;
    return r;
  }

  WorkerReply call(const std::string& prompt = "p") {
    return orch::testing::dispatch_and_wait(*registry, request(prompt));
  }
  // The reply to a worker that answers `body` with HTTP `status`.
  WorkerReply answer(const std::string& body, int status = 200,
                     std::vector<std::pair<std::string, std::string>> headers = {}) {
    FakeReply r;
    r.status = status;
    r.raw_body = body;
    r.headers = std::move(headers);
    fake.push(r);
    return call();
  }
  std::string last_body() {
    auto calls = fake.calls();
    REQUIRE(!calls.empty());
    return calls.back().body;
  }

  FakeWorker fake;
  std::shared_ptr<orch::ManualClock> clock;
  std::shared_ptr<orch::WorkerRegistry> registry;
};

}  // namespace

TEST_CASE("request bodies match NullBoiler's, key for key", "[wire]") {
  {
    Wire w(FakeWorker::Format::kWebhook, "webhook");
    REQUIRE(w.call("say \"hi\"").status.ok());
    CHECK(w.last_body() ==
          R"({"message":"say \"hi\"","text":"say \"hi\"","session_key":"run_run-1_step_step-1","session_id":"run_run-1_step_step-1"})");
  }
  {
    Wire w(FakeWorker::Format::kApiChat, "api_chat");
    REQUIRE(w.call("say \"hi\"").status.ok());
    CHECK(w.last_body() == R"({"message":"say \"hi\"","session_id":"run_run-1_step_step-1"})");
  }
  {
    Wire w(FakeWorker::Format::kOpenAiChat, "openai_chat", "gpt-x");
    REQUIRE(w.call("say \"hi\"").status.ok());
    CHECK(w.last_body() ==
          R"({"model":"gpt-x","stream":false,"messages":[{"role":"user","content":"say \"hi\""}]})");
  }
}

TEST_CASE("a2a requests are v0.3 message/send to /a2a with the session as contextId", "[wire]") {
  Wire w(FakeWorker::Format::kA2a, "a2a", "", "/");
  REQUIRE(w.call("plan it").status.ok());
  auto call = w.fake.calls().back();
  CHECK(call.path == "/a2a");
  Value body = call.json;
  const std::string message_id = body.find_path("params.message.messageId")->as_string();
  CHECK(orch::is_uuid(message_id));
  CHECK(call.body ==
        R"({"jsonrpc":"2.0","id":"run_run-1_step_step-1","method":"message/send","params":{"message":)"
        R"({"kind":"message","role":"user","parts":[{"kind":"text","text":"plan it"}],"messageId":")" +
            message_id +
            R"(","contextId":"run_run-1_step_step-1"},"configuration":{"acceptedOutputModes":["text/plain","application/json"],)"
            R"("blocking":true}}})");
}

TEST_CASE("session keys fall back to run and step for send items", "[wire]") {
  Wire w(FakeWorker::Format::kApiChat, "api_chat");
  WorkerRequest r = w.request("x");
  r.session_id.clear();
  r.run_id = "R";
  r.call_id = "S#item3.1";
  REQUIRE(orch::testing::dispatch_and_wait(*w.registry, r).status.ok());
  CHECK(w.last_body() == R"({"message":"x","session_id":"run_R_step_S"})");
}

TEST_CASE("call URLs: trailing slash trimmed, webhook path kept", "[wire]") {
  Wire w(FakeWorker::Format::kWebhook, "webhook", "", "/deep/path/");
  REQUIRE(w.call().status.ok());
  CHECK(w.fake.calls().back().path == "/webhook/deep/path");
}

TEST_CASE("chat replies: response, reply, choices[0].message.content", "[wire]") {
  Wire w(FakeWorker::Format::kWebhook, "webhook");
  CHECK(w.answer(R"({"response":"a"})").output == "a");
  CHECK(w.answer(R"({"reply":"b"})").output == "b");
  CHECK(w.answer(R"({"choices":[{"message":{"content":"c"}}]})").output == "c");
  CHECK(w.answer(R"({"response":"a","reply":"b"})").output == "a");
  auto r = w.answer(R"({"output":"x"})");  // not an accepted field
  CHECK(r.status.message() == "worker response missing response/reply/choices.message.content field");
  CHECK(r.retryable);
  CHECK(w.answer(R"({"status":"received"})").status.message() ==
        "worker acknowledged request but returned no synchronous output");
  CHECK(w.answer("[1]").status.message() == "worker response must be a JSON object");
  CHECK(w.answer("nope").status.message() == "worker response must be a JSON object");
  CHECK(w.answer(R"({"error":"boom","response":"a"})").status.message() == "boom");
  CHECK(w.answer(R"({"error":{"message":"bad"}})").status.message() == "bad");
  CHECK(w.answer(R"({"error":null,"response":"a"})").status.ok());
  CHECK(w.answer(R"({"error":{"code":1},"response":"a"})").status.ok());
  CHECK(w.answer(R"({"response":"a"})").worker_id == "w");
}

TEST_CASE("chat replies: top-level control fields go to the envelope", "[wire]") {
  Wire w(FakeWorker::Format::kApiChat, "api_chat");
  auto r = w.answer(R"({"response":"t","goto":"b","state_updates":{"x":1},"usage":{"prompt_tokens":3},)"
                    R"("rate_limit":{"remaining":1},"ui_messages":[1],"stream_messages":[2],"done":true,"other":0})");
  REQUIRE(r.status.ok());
  CHECK(r.envelope.to_json() ==
        R"({"goto":"b","state_updates":{"x":1},"usage":{"prompt_tokens":3},"rate_limit":{"remaining":1},)"
        R"("ui_messages":[1],"stream_messages":[2],"done":true})");
  auto steer = w.answer(R"({"state_updates":{"x":1}})");
  CHECK(steer.status.ok());
  CHECK(steer.output.empty());
}

TEST_CASE("HTTP failures: 429 variants, 4xx not retried, 5xx retried", "[wire]") {
  Wire w(FakeWorker::Format::kOpenAiChat, "openai_chat", "m");
  auto quota = w.answer(R"({"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}})", 429);
  CHECK(quota.status.code() == StatusCode::kResourceExhausted);
  CHECK(quota.status.message() == "HTTP 429: You exceeded your current quota");
  CHECK_FALSE(quota.retryable);
  auto limited = w.answer(R"({"error":{"message":"slow down","code":"rate_limit_exceeded"}})", 429,
                          {{"Retry-After", "2"}});
  CHECK(limited.retryable);
  CHECK(limited.retry_after_ms == 2000);
  CHECK(w.answer("", 429, {{"retry-after-ms", "150"}, {"Retry-After", "9"}}).retry_after_ms == 150);
  CHECK(w.answer(R"({"error":{"code":"rate_limit_exceeded"}})", 429).retry_after_ms == -1);
  // An HTTP-date, read against the registry's clock.
  CHECK(w.answer("", 429, {{"Retry-After", "Mon, 01 Jan 2024 00:00:05 GMT"}}).retry_after_ms == 5000);
  auto bad = w.answer(R"({"error":"no prompt"})", 400);
  CHECK(bad.status.message() == "HTTP 400: no prompt");
  CHECK_FALSE(bad.retryable);
  CHECK(w.answer("", 404).status.code() == StatusCode::kNotFound);
  CHECK_FALSE(w.answer("", 401).retryable);
  auto down = w.answer("<html>", 503, {{"Retry-After", "1"}});
  CHECK(down.status.code() == StatusCode::kUnavailable);
  CHECK(down.status.message() == "HTTP 503");
  CHECK(down.retryable);
  CHECK(down.retry_after_ms == 1000);
}

TEST_CASE("x-ratelimit headers become the worker's rate-limit report", "[wire]") {
  Wire w(FakeWorker::Format::kOpenAiChat, "openai_chat", "m");
  FakeReply r;
  r.headers = {{"x-ratelimit-limit-requests", "60"},
               {"x-ratelimit-remaining-requests", "59"},
               {"x-ratelimit-reset-requests", "6m0.5s"}};
  w.fake.push(r);
  auto reply = w.call();
  REQUIRE(reply.status.ok());
  CHECK(reply.envelope["rate_limit"].to_json() == R"({"remaining":59,"limit":60,"reset_ms":360500})");
  auto limits = w.registry->rate_limits();
  REQUIRE(limits.size() == 1);
  CHECK(limits[0].remaining == 59);
  CHECK(limits[0].updated_at_ms == kNowMs);
}

TEST_CASE("a2a v0.3 task results", "[wire]") {
  Wire w(FakeWorker::Format::kA2a, "a2a");
  auto done = w.answer(
      R"({"jsonrpc":"2.0","id":"k","result":{"id":"task-1","contextId":"c","kind":"task",)"
      R"("status":{"state":"completed"},"artifacts":[{"artifactId":"a","parts":[{"kind":"text","text":"hello"}]}],)"
      R"("metadata":{"state_updates":{"x":1}}}})");
  REQUIRE(done.status.ok());
  CHECK(done.output == "hello");
  CHECK(done.envelope.to_json() == R"({"state_updates":{"x":1},"done":true})");

  auto ask = w.answer(
      R"({"jsonrpc":"2.0","id":"k","result":{"id":"task-2","kind":"task","status":{"state":"input-required",)"
      R"("message":{"role":"agent","parts":[{"kind":"text","text":"which one?"}]}}}})");
  REQUIRE(ask.status.ok());
  CHECK(ask.output == "which one?");
  CHECK(ask.envelope["done"].as_bool() == false);
  // The next call of the same session continues the task that asked.
  REQUIRE(w.call("that one").status.ok());
  CHECK(w.fake.calls().back().json.find_path("params.message.taskId")->as_string() == "task-2");
  REQUIRE(w.call("new").status.ok());
  CHECK_FALSE(w.fake.calls().back().json.find_path("params.message.taskId"));

  CHECK(w.answer(R"({"result":{"kind":"task","status":{"state":"failed",)"
                 R"("message":{"parts":[{"kind":"text","text":"tool crashed"}]}}}})")
            .status.message() == "tool crashed");
  CHECK(w.answer(R"({"result":{"kind":"task","status":{"state":"failed"}}})").status.message() ==
        "A2A: task failed");
  CHECK(w.answer(R"({"result":{"kind":"task","status":{"state":"completed"}}})").status.message() ==
        "A2A: no text found in artifacts");
  CHECK_FALSE(w.answer(R"({"result":{"kind":"task","status":{"state":"rejected"}}})").retryable);
  auto data = w.answer(R"({"result":{"kind":"task","status":{"state":"completed"},)"
                       R"("artifacts":[{"parts":[{"kind":"data","data":{"goto":"b"}}]}]}})");
  CHECK(data.output == R"({"goto":"b"})");
}

TEST_CASE("a2a message results and v1.0 shapes", "[wire]") {
  Wire w(FakeWorker::Format::kA2a, "a2a");
  auto msg = w.answer(R"({"jsonrpc":"2.0","id":1,"result":{"kind":"message","role":"agent","messageId":"m",)"
                      R"("parts":[{"kind":"text","text":"a"},{"kind":"text","text":"b"}]}})");
  REQUIRE(msg.status.ok());
  CHECK(msg.output == "ab");
  CHECK_FALSE(msg.envelope.find("done"));

  auto v1 = w.answer(R"({"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t9","contextId":"c","status":)"
                     R"({"state":"TASK_STATE_COMPLETED"},"artifacts":[{"artifactId":"a","parts":[{"text":"v1 text"}]}]}}})");
  REQUIRE(v1.status.ok());
  CHECK(v1.output == "v1 text");
  CHECK(v1.envelope["done"].as_bool());

  auto v1_ask = w.answer(R"({"result":{"task":{"id":"t","status":{"state":"TASK_STATE_INPUT_REQUIRED",)"
                         R"("message":{"role":"ROLE_AGENT","parts":[{"text":"more?"}]}}}}})");
  CHECK(v1_ask.output == "more?");
  CHECK(v1_ask.envelope["done"].as_bool() == false);

  CHECK(w.answer(R"({"result":{"message":{"role":"ROLE_AGENT","parts":[{"text":"hi"}]}}})").output == "hi");
  CHECK(w.answer(R"({"result":{"task":{"id":"t","status":{"state":"TASK_STATE_CANCELLED"}}}})").status.message() ==
        "A2A: task canceled");
}

TEST_CASE("a2a errors", "[wire]") {
  Wire w(FakeWorker::Format::kA2a, "a2a");
  auto rpc = w.answer(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Agent processing failed"}})");
  CHECK(rpc.status.message() == "Agent processing failed");
  CHECK(rpc.retryable);
  CHECK_FALSE(w.answer(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}})").retryable);
  CHECK(w.answer(R"({"error":{}})").status.message() == "A2A: JSON-RPC error");
  CHECK(w.answer("<html>").status.message() == "A2A: invalid JSON response");
  CHECK(w.answer("[]").status.message() == "A2A: response is not a JSON object");
  CHECK(w.answer(R"({"jsonrpc":"2.0"})").status.message() == "A2A: missing result field");
  CHECK(w.answer(R"({"result":3})").status.message() == "A2A: result is not an object");
}

TEST_CASE("a2a tasks still working are polled with tasks/get", "[wire]") {
  Wire w(FakeWorker::Format::kA2a, "a2a");
  FakeReply working;
  working.raw_body = R"({"jsonrpc":"2.0","id":"k","result":{"id":"t1","kind":"task","status":{"state":"working"}}})";
  FakeReply finished;
  finished.raw_body = R"({"jsonrpc":"2.0","id":"k","result":{"id":"t1","kind":"task","status":{"state":"completed"},)"
                      R"("artifacts":[{"parts":[{"kind":"text","text":"late"}]}]}})";
  w.fake.push(working);
  w.fake.push(finished);
  auto reply = w.call();
  REQUIRE(reply.status.ok());
  CHECK(reply.output == "late");
  auto calls = w.fake.calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[1].json["method"].as_string() == "tasks/get");
  CHECK(calls[1].json.find_path("params.id")->as_string() == "t1");
}
