// SPDX-License-Identifier: MIT
// /workers, /rate-limits and a run that reaches a real (fake) webhook worker.
#include <chrono>
#include <thread>

#include "catch.h"
#include "support/fake_workers.h"
#include "support/server_fixture.h"

using namespace std::chrono_literals;
using orch::Value;

namespace {
Value body_of(const httplib::Result& r) {
  REQUIRE(r);
  auto v = orch::parse_json(r->body);
  REQUIRE(v.ok());
  return *v;
}
}  // namespace

TEST_CASE("worker registration: validation messages, conflicts, listing, deletion", "[server][workers]") {
  orch::testing::TestServer server;
  auto c = server.client();
  struct Bad {
    const char* body;
    const char* message;
  };
  for (const Bad& b : std::vector<Bad>{
           {R"({"url": "http://x/webhook"})", "missing required field: id"},
           {R"({"id": "w"})", "missing required field: url"},
           {R"({"id": "w", "url": "http://x/a", "protocol": "smoke"})", "invalid protocol (expected webhook|api_chat|openai_chat|mqtt|redis_stream|a2a)"},
           {R"({"id": "w", "url": "http://x"})", "webhook protocol requires explicit URL path (for example /webhook)"},
           {R"({"id": "w", "url": "http://x/v1", "protocol": "openai_chat"})", "openai_chat protocol requires model"},
           {R"({"id": "w", "url": "http://x/a", "tags": "t"})", "tags must be an array of strings"},
           {R"({"id": "w", "url": "http://x/a", "tags": [1]})", "tags must be an array of strings"},
           {R"({"id": "w", "url": "http://x/a", "max_concurrent": 2.0})", "max_concurrent must be a positive integer"},
           {R"({"id": "w", "url": "http://x/a", "max_concurrent": 0})", "max_concurrent must be >= 1"},
           // Ids as a path can name them (DELETE /workers/{id}); tokens that fit a header.
           {R"({"id": "ctl\u0001x", "url": "http://x/a"})", "worker id must not contain control characters"},
           {R"({"id": "nl\nx", "url": "http://x/a"})", "worker id must not contain control characters"},
           {R"({"id": "w", "url": "http://x/a", "token": "t\r\nX-Injected: 1"})", "worker token must not contain control characters"},
           {R"({"id": "w", "url": "http://x/a", "token": "t\u007f"})", "worker token must not contain control characters"},
       }) {
    INFO(b.body);
    auto r = c->Post("/workers", b.body, "application/json");
    REQUIRE(r->status == 400);
    CHECK(body_of(r)["error"]["message"].as_string() == b.message);
  }
  const std::string long_id = std::string(300, 'w');
  auto too_long = c->Post("/workers", R"({"id": ")" + long_id + R"(", "url": "http://x/a"})", "application/json");
  REQUIRE(too_long->status == 400);
  CHECK(body_of(too_long)["error"]["message"].as_string() == "worker id is 300 bytes long; the limit is 256");
  // The longest id accepted is one the path can name, and so delete.
  const std::string longest(256, 'w');
  REQUIRE(c->Post("/workers", R"({"id": ")" + longest + R"(", "url": "http://x/a"})", "application/json")->status == 201);
  CHECK(c->Delete(("/workers/" + longest).c_str())->status == 200);
  auto ok = c->Post("/workers", R"({"id": "w1", "url": "http://127.0.0.1:9/webhook", "tags": ["coder"], "max_concurrent": 2})",
                    "application/json");
  REQUIRE(ok->status == 201);
  CHECK(body_of(ok).to_json() == R"({"id":"w1","status":"active","protocol":"webhook"})");
  CHECK(c->Post("/workers", R"({"id": "w1", "url": "http://127.0.0.1:9/webhook"})", "application/json")->status == 409);
  REQUIRE(c->Post("/workers", R"({"id": "w2", "url": "http://127.0.0.1:9/v1", "protocol": "openai_chat", "model": "m"})",
                  "application/json")->status == 201);
  Value list = body_of(c->Get("/workers"));
  REQUIRE(list.size() == 2);
  CHECK((*list.at(0))["id"].as_string() == "w2");  // newest first
  CHECK((*list.at(1))["tags"].to_json() == R"(["coder"])");
  CHECK((*list.at(1))["max_concurrent"].as_int() == 2);
  CHECK((*list.at(1))["source"].as_string() == "registered");
  CHECK((*list.at(0))["model"].as_string() == "m");
  CHECK(list.to_json().find("token") == std::string::npos);
  CHECK(body_of(c->Get("/health"))["total_workers"].as_int() == 2);
  CHECK(c->Delete("/workers/w2")->status == 200);
  CHECK(c->Delete("/workers/w2")->status == 404);
  CHECK(body_of(c->Get("/rate-limits")).is_array());
}

TEST_CASE("config workers are seeded, a run reaches a webhook worker", "[server][workers]") {
  orch::testing::FakeWorker worker;
  orch::server::ServerConfig config;
  config.workers = *orch::parse_json(std::string(R"([{"id": "cfg", "url": ")") + worker.url() +
                                     R"(", "token": "tok", "tags": ["writer"]}, {"id": "broken", "url": "nope"}])");
  orch::testing::TestServer server(config);
  auto c = server.client();
  Value list = body_of(c->Get("/workers"));
  REQUIRE(list.size() == 1);  // the malformed config worker is skipped with a warning
  CHECK((*list.at(0))["source"].as_string() == "config");

  auto run = c->Post("/runs", R"({"workflow": {
      "state_schema": {"draft": {"type": "string"}},
      "nodes": {"write": {"type": "task", "worker_tags": ["writer"], "output_key": "draft",
                          "prompt_template": "Write about {{input.topic}}"}},
      "edges": [["__start__", "write"], ["write", "__end__"]]},
    "input": {"topic": "otters"}})", "application/json");
  REQUIRE(run->status == 201);
  std::string id = body_of(run)["id"].as_string();
  Value done;
  for (int i = 0; i < 500; ++i) {
    done = body_of(c->Get(("/runs/" + id).c_str()));
    if (done["status"].as_string() != "running") break;
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(done["status"].as_string() == "completed");
  CHECK(done["state_json"]["draft"].as_string() == "echo: Write about otters");
  auto calls = worker.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].header("authorization") == "Bearer tok");
  CHECK(done["steps"].size() >= 1);
}

TEST_CASE("a config worker whose id or token breaks the rules stops start-up, naming it", "[server][workers]") {
  struct Bad {
    const char* workers;
    const char* message;
  };
  for (const Bad& b : std::vector<Bad>{
           {R"([{"id": "ok", "url": "http://127.0.0.1:9/a"}, {"id": "ctl\u0001x", "url": "http://127.0.0.1:9/a"}])",
            "config workers[1] (id \"ctl\\u0001x\"): worker id must not contain control characters"},
           {R"([{"id": "crlf", "url": "http://127.0.0.1:9/a", "token": "t\r\nX: 1"}])",
            "config workers[0] (id \"crlf\"): worker token must not contain control characters"},
       }) {
    INFO(b.workers);
    orch::server::ServerConfig config;
    config.db = ":memory:";
    config.workers = *orch::parse_json(b.workers);
    auto app = orch::server::open_app(config, nullptr);
    REQUIRE_FALSE(app.ok());
    CHECK(app.status().message() == b.message);
  }
  // Other problems still skip the worker with a warning, as NullBoiler does.
  orch::server::ServerConfig config;
  config.workers = *orch::parse_json(R"([{"id": "w", "url": "ftp://x/a"}])");
  orch::testing::TestServer server(config);
  CHECK(body_of(server.client()->Get("/workers")).size() == 0);
}
