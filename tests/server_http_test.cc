// SPDX-License-Identifier: MIT
// The HTTP API over real loopback HTTP: routes, shapes, status codes, errors.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "catch.h"
#include "callbacks.h"
#include "workflow_cache.h"
#include "support/server_fixture.h"

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::TestServer;

namespace {

Value body_of(const httplib::Result& r) {
  REQUIRE(r);
  auto v = orch::parse_json(r->body);
  REQUIRE(v.ok());
  return *v;
}

const char* kLinear = R"({"id": "linear", "name": "Linear",
  "state_schema": {"log": {"type": "array", "reducer": "append"}, "n": {"type": "number", "reducer": "add"}},
  "nodes": {"a": {"type": "transform", "updates": {"log": ["a"], "n": 1}},
            "b": {"type": "transform", "updates": {"log": ["b"], "n": 2}}},
  "edges": [["__start__", "a"], ["a", "b"], ["b", "__end__"]]})";

const char* kPausing = R"({"id": "pausing",
  "state_schema": {"log": {"type": "array", "reducer": "append"}, "approved": {}},
  "nodes": {"a": {"type": "transform", "updates": {"log": ["a"]}},
            "ask": {"type": "interrupt", "message": "ok?"},
            "b": {"type": "transform", "updates": {"log": ["b"]}}},
  "edges": [["__start__", "a"], ["a", "ask"], ["ask", "b"], ["b", "__end__"]]})";

// Polls GET /runs/{id} until the run leaves "running" (a test helper only).
Value wait_run(httplib::Client& c, const std::string& id) {
  for (int i = 0; i < 1000; ++i) {
    Value run = body_of(c.Get(("/runs/" + id).c_str()));
    if (run["status"].as_string() != "running") return run;
    std::this_thread::sleep_for(5ms);
  }
  FAIL("run did not stop");
  return Value();
}

std::string create_workflow(httplib::Client& c, const char* def) {
  auto r = c.Post("/workflows", def, "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 201);
  return body_of(r)["id"].as_string();
}

}  // namespace

TEST_CASE("health, metrics, unknown paths and wrong methods", "[server]") {
  TestServer server;
  auto c = server.client();
  auto h = c->Get("/health");
  REQUIRE(h->status == 200);
  Value health = body_of(h);
  CHECK(health["status"].as_string() == "ok");
  CHECK(health["draining"].as_bool() == false);

  auto m = c->Get("/metrics");
  REQUIRE(m->status == 200);
  CHECK(m->get_header_value("Content-Type").find("text/plain") == 0);
  CHECK(m->body.find("# HELP orch_http_requests_total") != std::string::npos);
  CHECK(m->body.find("# TYPE orch_http_request_duration_seconds histogram") != std::string::npos);

  auto nf = c->Get("/nope");
  REQUIRE(nf->status == 404);
  CHECK(body_of(nf)["error"]["code"].as_string() == "not_found");

  auto wrong = c->Delete("/health");
  REQUIRE(wrong->status == 405);
  CHECK(wrong->get_header_value("Allow") == "GET");
  CHECK(body_of(wrong)["error"]["code"].as_string() == "method_not_allowed");
  CHECK(c->Put("/runs", "{}", "application/json")->status == 405);

  // HEAD is GET without the body (RFC 9110): a client probing a URL is not refused.
  auto head = c->Head("/health");
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->body.empty());
  CHECK(head->get_header_value("Content-Type") == "application/json");
  CHECK(c->Head("/runs")->status == 200);
  CHECK(c->Head("/runs/00000000-0000-0000-0000-000000000000")->status == 404);
  CHECK(c->Head("/nope")->status == 404);
  CHECK(c->Get("/health")->status == 200);  // the connection is still in step
}

TEST_CASE("bearer auth: constant answers, health and metrics stay open", "[server]") {
  orch::server::ServerConfig config;
  config.api_token = "s3cret";
  TestServer server(config);
  auto c = server.client();
  CHECK(c->Get("/health")->status == 200);
  CHECK(c->Get("/metrics")->status == 200);
  auto denied = c->Get("/runs");
  REQUIRE(denied->status == 401);
  CHECK(body_of(denied)["error"]["code"].as_string() == "unauthorized");
  CHECK(c->Get("/runs", {{"Authorization", "Bearer wrong"}})->status == 401);
  CHECK(c->Get("/runs", {{"Authorization", "Bearer s3cret"}})->status == 200);
  CHECK(c->Get("/runs", {{"Authorization", "bearer s3cret"}})->status == 200);
}

TEST_CASE("oversized bodies get 413, malformed ones 400", "[server]") {
  orch::server::ServerConfig config;
  config.max_body_bytes = 1024;
  TestServer server(config);
  auto c = server.client();
  auto big = c->Post("/workflows", std::string(4096, ' '), "application/json");
  REQUIRE(big);
  CHECK(big->status == 413);
  auto bad = c->Post("/workflows", "{nope", "application/json");
  REQUIRE(bad->status == 400);
  CHECK(body_of(bad)["error"]["message"].as_string().find("invalid JSON body") == 0);
  auto arr = c->Post("/workflows", "[1]", "application/json");
  REQUIRE(arr->status == 400);
  CHECK(body_of(arr)["error"]["message"].as_string() == "body must be a JSON object");
}

TEST_CASE("workflow CRUD, validate, mermaid", "[server]") {
  TestServer server;
  auto c = server.client();
  CHECK(create_workflow(*c, kLinear) == "linear");
  auto dup = c->Post("/workflows", kLinear, "application/json");
  CHECK(dup->status == 409);
  Value got = body_of(c->Get("/workflows/linear"));
  CHECK(got["name"].as_string() == "Linear");
  CHECK(got["definition"]["nodes"]["a"]["type"].as_string() == "transform");
  CHECK(body_of(c->Get("/workflows")).size() == 1);

  // PUT keeps the name when it is omitted.
  auto put = c->Put("/workflows/linear", R"({"definition_json": {"nodes": {}, "edges": []}, "version": 2})",
                    "application/json");
  REQUIRE(put->status == 200);
  got = body_of(c->Get("/workflows/linear"));
  CHECK(got["name"].as_string() == "Linear");
  CHECK(got["version"].as_int() == 2);

  Value v = body_of(c->Post("/workflows/linear/validate", "", "application/json"));
  CHECK(v["valid"].as_bool() == false);
  CHECK(v["mermaid"].as_string().rfind("graph TD", 0) == 0);

  auto mm = c->Get("/workflows/linear/mermaid");
  REQUIRE(mm->status == 200);
  CHECK(mm->get_header_value("Content-Type").find("text/plain") == 0);
  CHECK(c->Get("/workflows/missing/mermaid")->status == 404);
  CHECK(c->Delete("/workflows/linear")->status == 200);
  CHECK(c->Get("/workflows/linear")->status == 404);
  CHECK(c->Delete("/workflows/linear")->status == 404);
}

TEST_CASE("runs from a stored workflow, inline, and legacy steps", "[server]") {
  TestServer server;
  auto c = server.client();
  create_workflow(*c, kLinear);

  auto r = c->Post("/workflows/linear/run", R"({"input": {"n": 10}})", "application/json");
  REQUIRE(r->status == 201);
  std::string id = body_of(r)["id"].as_string();
  Value run = wait_run(*c, id);
  CHECK(run["status"].as_string() == "completed");
  CHECK(run["state_json"]["n"].as_int() == 13);
  CHECK(run["workflow_id"].as_string() == "linear");
  CHECK(run["checkpoint_count"].as_int() >= 3);

  Value cps = body_of(c->Get(("/runs/" + id + "/checkpoints").c_str()));
  REQUIRE(cps.size() >= 3);
  std::string cp_id = (*cps.at(0))["id"].as_string();
  CHECK(body_of(c->Get(("/runs/" + id + "/checkpoints/" + cp_id).c_str()))["version"].as_int() == 0);  // __init__, as in NullBoiler
  CHECK(c->Get(("/runs/" + id + "/checkpoints/nope").c_str())->status == 404);
  Value events = body_of(c->Get(("/runs/" + id + "/events").c_str()));
  CHECK((*events.at(0))["kind"].as_string() == "run.started");

  auto inline_run = c->Post("/runs", std::string(R"({"workflow": )") + kLinear + R"(, "input": {}})", "application/json");
  REQUIRE(inline_run->status == 201);
  CHECK(wait_run(*c, body_of(inline_run)["id"].as_string())["state_json"]["n"].as_int() == 3);

  auto by_id = c->Post("/runs", R"({"workflow_id": "linear"})", "application/json");
  REQUIRE(by_id->status == 201);
  CHECK(c->Post("/runs", R"({"workflow_id": "missing"})", "application/json")->status == 404);

  // Legacy steps have no worker here: the step waits for one until its
  // timeout, so the run fails, but it runs.
  auto legacy = c->Post("/runs", R"({"steps": [{"id": "s1", "prompt_template": "hi", "timeout_ms": 200}]})",
                        "application/json");
  REQUIRE(legacy->status == 201);
  CHECK(wait_run(*c, body_of(legacy)["id"].as_string())["status"].as_string() == "failed");
  auto bad_legacy = c->Post("/runs", R"({"steps": []})", "application/json");
  REQUIRE(bad_legacy->status == 400);
  CHECK(body_of(bad_legacy)["error"]["message"].as_string() == "steps array must not be empty");

  auto invalid = c->Post("/runs", R"({"workflow": {"nodes": {"x": {}}, "edges": [["__start__", "y"]]}})", "application/json");
  REQUIRE(invalid->status == 400);
  CHECK(body_of(invalid)["error"]["details"].size() > 0);

  Value list = body_of(c->Get("/runs?limit=2"));
  CHECK(list["items"].size() == 2);
  CHECK(list["has_more"].as_bool());
  CHECK(list["next_offset"].as_int() == 2);
  CHECK(c->Get("/runs?status=bogus")->status == 400);
}

TEST_CASE("idempotency keys replay or conflict", "[server]") {
  TestServer server;
  auto c = server.client();
  create_workflow(*c, kLinear);
  auto first = c->Post("/workflows/linear/run", {{"Idempotency-Key", "k1"}}, R"({"input": {"n": 1}})", "application/json");
  REQUIRE(first->status == 201);
  auto again = c->Post("/workflows/linear/run", {{"Idempotency-Key", "k1"}}, R"({"input": {"n": 1}})", "application/json");
  REQUIRE(again->status == 200);
  CHECK(body_of(again)["idempotent_replay"].as_bool());
  CHECK(body_of(again)["id"] == body_of(first)["id"]);
  auto conflict = c->Post("/workflows/linear/run", {{"Idempotency-Key", "k1"}}, R"({"input": {"n": 2}})", "application/json");
  CHECK(conflict->status == 409);
  auto body_key = c->Post("/runs", R"({"workflow_id": "linear", "idempotency_key": "k2"})", "application/json");
  CHECK(body_key->status == 201);
  CHECK(c->Post("/runs", R"({"workflow_id": "linear", "idempotency_key": ""})", "application/json")->status == 400);
}

TEST_CASE("drain blocks every way to start a run and shows in health", "[server]") {
  TestServer server;
  auto c = server.client();
  create_workflow(*c, kLinear);
  auto r = c->Post("/workflows/linear/run", "{}", "application/json");
  std::string id = body_of(r)["id"].as_string();
  wait_run(*c, id);
  Value cps = body_of(c->Get(("/runs/" + id + "/checkpoints").c_str()));
  REQUIRE(c->Post("/admin/drain", "", "application/json")->status == 200);
  CHECK(body_of(c->Get("/health"))["draining"].as_bool());
  CHECK(c->Post("/workflows/linear/run", "{}", "application/json")->status == 503);
  CHECK(c->Post("/runs", R"({"workflow_id": "linear"})", "application/json")->status == 503);
  std::string fork = std::string(R"({"checkpoint_id": ")") + (*cps.at(0))["id"].as_string() + "\"}";
  CHECK(c->Post("/runs/fork", fork, "application/json")->status == 503);
}

TEST_CASE("interrupt, resume, fork, replay, cancel, retry and state over HTTP", "[server]") {
  TestServer server;
  auto c = server.client();
  create_workflow(*c, kPausing);
  std::string id = body_of(c->Post("/workflows/pausing/run", "{}", "application/json"))["id"].as_string();
  Value paused = wait_run(*c, id);
  REQUIRE(paused["status"].as_string() == "interrupted");

  CHECK(c->Post(("/runs/" + id + "/retry").c_str(), "", "application/json")->status == 409);
  auto inject = c->Post(("/runs/" + id + "/state").c_str(), R"({"updates": {"approved": "maybe"}})", "application/json");
  REQUIRE(inject->status == 200);
  CHECK(body_of(inject)["applied"].as_bool());
  CHECK(c->Post(("/runs/" + id + "/state").c_str(), R"({"nope": 1})", "application/json")->status == 400);

  auto resume = c->Post(("/runs/" + id + "/resume").c_str(), R"({"state_updates": {"approved": true}})", "application/json");
  REQUIRE(resume->status == 200);
  Value done = wait_run(*c, id);
  CHECK(done["status"].as_string() == "completed");
  CHECK(done["state_json"]["approved"].as_bool());
  CHECK(done["state_json"]["log"].to_json() == R"(["a","b"])");
  CHECK(c->Post(("/runs/" + id + "/resume").c_str(), "", "application/json")->status == 409);
  CHECK(c->Post(("/runs/" + id + "/cancel").c_str(), "", "application/json")->status == 409);

  // Fork from the first checkpoint: valid JSON, a new run that completes.
  Value cps = body_of(c->Get(("/runs/" + id + "/checkpoints").c_str()));
  std::string first_cp = (*cps.at(0))["id"].as_string();
  auto fork = c->Post("/runs/fork", std::string(R"({"checkpoint_id": ")") + first_cp + R"(", "state_overrides": {"approved": "forked"}})",
                      "application/json");
  REQUIRE(fork->status == 201);
  Value forked = body_of(fork);
  CHECK(forked["forked_from_checkpoint"].as_string() == first_cp);
  Value fork_paused = wait_run(*c, forked["id"].as_string());
  CHECK(fork_paused["status"].as_string() == "interrupted");
  CHECK(fork_paused["state_json"]["approved"].as_string() == "forked");
  // The fork's first checkpoint is __fork__ at version 0 (NullBoiler's numbering), its parent the source's.
  Value fork_cps = body_of(c->Get(("/runs/" + forked["id"].as_string() + "/checkpoints").c_str()));
  REQUIRE(fork_cps.size() >= 1);
  CHECK((*fork_cps.at(0))["step_id"].as_string() == "__fork__");
  CHECK((*fork_cps.at(0))["version"].as_int() == 0);
  CHECK((*fork_cps.at(0))["parent_id"].as_string() == first_cp);
  CHECK((*fork_cps.at(0)).find("metadata") == nullptr);  // as NullBoiler's __fork__

  // Replay the finished run from its first checkpoint (history and events exist).
  auto replay = c->Post(("/runs/" + id + "/replay").c_str(), std::string(R"({"checkpoint_id": ")") + first_cp + "\"}",
                        "application/json");
  REQUIRE(replay->status == 200);
  CHECK(body_of(replay)["replayed_from_checkpoint"].as_string() == first_cp);
  CHECK(wait_run(*c, id)["status"].as_string() == "interrupted");
  CHECK(c->Post(("/runs/" + forked["id"].as_string() + "/replay").c_str(),
                std::string(R"({"checkpoint_id": ")") + first_cp + "\"}", "application/json")->status == 400);

  // Cancel the paused fork; then delete both runs with their history.
  CHECK(c->Post(("/runs/" + forked["id"].as_string() + "/cancel").c_str(), "", "application/json")->status == 200);
  CHECK(body_of(c->Get(("/runs/" + forked["id"].as_string()).c_str()))["status"].as_string() == "cancelled");
  CHECK(c->Delete(("/runs/" + id).c_str())->status == 200);
  CHECK(c->Get(("/runs/" + id).c_str())->status == 404);
  CHECK(c->Get(("/runs/" + id + "/events").c_str())->status == 404);
}

TEST_CASE("SSE: a client reconnects with Last-Event-ID and gets every event exactly once", "[server][sse]") {
  TestServer server;
  auto c = server.client();
  create_workflow(*c, kPausing);
  std::string id = body_of(c->Post("/workflows/pausing/run", "{}", "application/json"))["id"].as_string();
  wait_run(*c, id);  // paused: the stream stays open until the run ends

  std::vector<int64_t> seen;
  std::string buffer;
  auto collect = [&](const char* data, size_t n) {
    buffer.append(data, n);
    size_t pos;
    while ((pos = buffer.find("\n\n")) != std::string::npos) {
      std::string frame = buffer.substr(0, pos);
      buffer.erase(0, pos + 2);
      if (frame.rfind("id: ", 0) == 0) seen.push_back(std::stoll(frame.substr(4)));
    }
    return seen.empty();  // disconnect after the first batch of events
  };
  auto first = c->Get(("/runs/" + id + "/stream").c_str(), collect);
  REQUIRE(!seen.empty());
  // Resume the run, then reconnect after the last event we saw.
  REQUIRE(c->Post(("/runs/" + id + "/resume").c_str(), "", "application/json")->status == 200);
  buffer.clear();
  int64_t last = seen.back();
  auto rest = c->Get(("/runs/" + id + "/stream").c_str(), {{"Last-Event-ID", std::to_string(last)}},
                     [&](const char* data, size_t n) {
                       buffer.append(data, n);
                       size_t pos;
                       while ((pos = buffer.find("\n\n")) != std::string::npos) {
                         std::string frame = buffer.substr(0, pos);
                         buffer.erase(0, pos + 2);
                         if (frame.rfind("id: ", 0) == 0) seen.push_back(std::stoll(frame.substr(4)));
                       }
                       return true;
                     });
  REQUIRE(rest);
  CHECK(rest->get_header_value("Content-Type") == "text/event-stream");
  auto events = server.app().store->list_events(id, 0, 100000);
  REQUIRE(events.ok());
  REQUIRE(seen.size() == events->size());
  for (size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == static_cast<int64_t>(i + 1));

  // The JSON snapshot for clients that ask for JSON.
  Value snap = body_of(c->Get(("/runs/" + id + "/stream?mode=values").c_str(), {{"Accept", "application/json"}}));
  CHECK(snap["status"].as_string() == "completed");
  CHECK(snap["stream_events"].size() >= 1);
  // NullBoiler's cursors: next_stream_seq is the last event (also for a
  // cursor past it), stream_oldest_seq the oldest one kept (the first).
  const int64_t last_seq = events->back().seq;
  CHECK(snap["next_stream_seq"].as_int() == last_seq);
  CHECK(snap["stream_oldest_seq"].as_int() == 1);
  for (int64_t after : {int64_t{2}, last_seq, last_seq + 40}) {
    INFO("after_seq " << after);
    Value page = body_of(c->Get(("/runs/" + id + "/stream?after_seq=" + std::to_string(after)).c_str(),
                                {{"Accept", "application/json"}}));
    CHECK(page["next_stream_seq"].as_int() == last_seq);
    CHECK(page["stream_oldest_seq"].as_int() == 1);
    CHECK(page["events"].size() == 0);
  }
  CHECK(c->Get(("/runs/" + id + "/stream?mode=bogus").c_str())->status == 400);
  CHECK(c->Get("/runs/nope/stream")->status == 404);
}

TEST_CASE("100 concurrent SSE clients while /health stays fast", "[server][sse]") {
  orch::server::ServerConfig config;
  config.http_threads = 120;
  config.max_sse_clients = 100;
  TestServer server(config);
  auto c = server.client();
  create_workflow(*c, kPausing);
  std::string id = body_of(c->Post("/workflows/pausing/run", "{}", "application/json"))["id"].as_string();
  wait_run(*c, id);
  std::atomic<int> connected{0};
  std::atomic<int> finished{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 100; ++i) {
    clients.emplace_back([&] {
      // httplib's listen backlog is small: a refused connect is retried.
      bool counted = false;
      for (int attempt = 0; attempt < 50 && !counted; ++attempt) {
        httplib::Client sc("127.0.0.1", server.port());
        sc.set_read_timeout(30, 0);
        sc.Get(("/runs/" + id + "/stream").c_str(), [&](const char*, size_t) {
          if (!counted) {
            counted = true;
            ++connected;
          }
          return true;
        });
        if (!counted) std::this_thread::sleep_for(20ms);
      }
      ++finished;
    });
    if (i % 10 == 9) std::this_thread::sleep_for(20ms);
  }
  for (int i = 0; i < 2000 && connected < 100; ++i) std::this_thread::sleep_for(5ms);
  CHECK(connected == 100);
  // One more stream is refused rather than starving the pool.
  auto refused = c->Get(("/runs/" + id + "/stream").c_str());
  REQUIRE(refused);
  CHECK(refused->status == 503);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) REQUIRE(c->Get("/health")->status == 200);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  REQUIRE(c->Post(("/runs/" + id + "/resume").c_str(), "", "application/json")->status == 200);
  for (auto& t : clients) t.join();
  CHECK(finished == 100);
}

TEST_CASE("callbacks are signed with HMAC-SHA256 and retried", "[server][callbacks]") {
  std::mutex mu;
  std::vector<std::pair<httplib::Headers, std::string>> received;
  std::atomic<int> calls{0};
  httplib::Server hook;
  hook.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    if (calls++ == 0) {  // the first delivery fails: it must be retried
      res.status = 500;
      return;
    }
    std::lock_guard<std::mutex> lock(mu);
    received.emplace_back(req.headers, req.body);
    res.status = 200;
  });
  int port = hook.bind_to_any_port("127.0.0.1");
  std::thread hook_thread([&] { hook.listen_after_bind(); });

  TestServer server;
  auto c = server.client();
  create_workflow(*c, kLinear);
  std::string body = R"({"callbacks": [{"url": "http://127.0.0.1:)" + std::to_string(port) +
                     R"(/hook", "events": ["run.completed"], "hmac_secret": "k", "headers": {"X-Test": "1"}}]})";
  std::string id = body_of(c->Post("/workflows/linear/run", body, "application/json"))["id"].as_string();
  CHECK(wait_run(*c, id)["status"].as_string() == "completed");
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!received.empty()) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  hook.stop();
  hook_thread.join();
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(received.size() == 1);
  const auto& [headers, payload] = received[0];
  Value sent = *orch::parse_json(payload);
  CHECK(sent["event"].as_string() == "run.completed");
  CHECK(sent["run_id"].as_string() == id);
  auto header = [&headers](const char* name) {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  };
  CHECK(header("X-Test") == "1");
  std::string expected = orch::server::sign_callback("k", header("X-Orch-Timestamp"), header("X-Orch-Nonce"), payload);
  CHECK(header("X-Orch-Signature") == expected);
  CHECK(header("X-NullBoiler-Signature") == expected);
  // An independent HMAC of a known message pins the format.
  CHECK(orch::server::sign_callback("key", "1", "n", "{}") ==
        "v1=74efa39107f3a0fc6ae9793f4dff3f6890cd3f8ebcd6f29416c3f994d51afb23");
  CHECK(calls >= 2);
}

TEST_CASE("a run's callbacks announced at its start are used without reading the run back", "[server][callbacks]") {
  std::mutex mu;
  std::vector<std::string> runs_heard;
  httplib::Server hook;
  hook.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    runs_heard.push_back((*orch::parse_json(req.body))["run_id"].as_string());
    res.status = 200;
  });
  int port = hook.bind_to_any_port("127.0.0.1");
  std::thread hook_thread([&] { hook.listen_after_bind(); });

  TestServer server;
  auto c = server.client();
  auto workflow = orch::parse_workflow(*orch::parse_json(kLinear));
  REQUIRE(workflow.ok());
  Value callbacks = *orch::parse_json(R"([{"url": "http://127.0.0.1:)" + std::to_string(port) +
                                      R"(/hook", "events": ["run.completed"]}])");
  auto start = [&](const std::string& run_id, const Value& announced) {
    server.app().callbacks->expect_run(run_id, announced);
    orch::RunOptions options;
    options.run_id = run_id;
    options.host_data = orch::Value::object({{"callbacks", callbacks}});  // what the store keeps
    REQUIRE(server.app().engine->start_run(*workflow, std::move(options)).ok());
    CHECK(wait_run(*c, run_id)["status"].as_string() == "completed");
  };
  // Announced as having none: the stored callbacks are never read.
  start("announced-none", Value());
  start("announced", callbacks);
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!runs_heard.empty()) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(100ms);  // time for a wrong delivery to arrive too
  hook.stop();
  hook_thread.join();
  std::lock_guard<std::mutex> lock(mu);
  CHECK(runs_heard == std::vector<std::string>{"announced"});
}

TEST_CASE("runs of a stored workflow share its parsed form until the workflow changes", "[server][workflows]") {
  orch::server::WorkflowCache cache;
  Value linear = *orch::parse_json(kLinear);
  auto first = cache.get("linear", linear);
  REQUIRE(first->workflow.ok());
  CHECK(cache.get("linear", *orch::parse_json(kLinear)) == first);  // an equal definition, read again
  Value changed = linear;
  changed["nodes"]["b"]["updates"]["n"] = 5;
  auto second = cache.get("linear", changed);
  CHECK(second != first);
  REQUIRE(second->workflow.ok());
  Value broken = linear;
  broken["edges"] = Value::array({Value::array({"__start__", "nowhere"})});
  auto bad = cache.get("linear", broken);
  CHECK_FALSE(orch::workflow_is_valid(bad->issues));
  CHECK_FALSE(bad->workflow.ok());

  // Through the API: a run started after an update runs the new definition.
  TestServer server;
  auto c = server.client();
  create_workflow(*c, kLinear);
  std::string before = body_of(c->Post("/workflows/linear/run", "{}", "application/json"))["id"].as_string();
  CHECK(wait_run(*c, before)["state_json"]["n"].as_int() == 3);
  REQUIRE(c->Put("/workflows/linear", R"({"definition": )" + changed.to_json() + "}", "application/json")->status == 200);
  std::string after = body_of(c->Post("/workflows/linear/run", "{}", "application/json"))["id"].as_string();
  CHECK(wait_run(*c, after)["state_json"]["n"].as_int() == 6);
  REQUIRE(c->Put("/workflows/linear", R"({"definition": )" + broken.to_json() + "}", "application/json")->status == 200);
  CHECK(c->Post("/workflows/linear/run", "{}", "application/json")->status == 400);
}

TEST_CASE("finished runs older than the retention are deleted with their history", "[server][retention]") {
  orch::server::ServerConfig config;
  config.retention_ms = 200;
  TestServer server(config);
  auto c = server.client();
  create_workflow(*c, kLinear);
  create_workflow(*c, kPausing);
  std::string done = body_of(c->Post("/workflows/linear/run", "{}", "application/json"))["id"].as_string();
  std::string paused = body_of(c->Post("/workflows/pausing/run", "{}", "application/json"))["id"].as_string();
  CHECK(wait_run(*c, done)["status"].as_string() == "completed");
  CHECK(wait_run(*c, paused)["status"].as_string() == "interrupted");
  int status = 200;
  for (int i = 0; i < 300 && status == 200; ++i) {
    std::this_thread::sleep_for(10ms);
    status = c->Get(("/runs/" + done).c_str())->status;
  }
  CHECK(status == 404);
  CHECK_FALSE(server.app().store->list_checkpoints(done).ok());
  // An interrupted run is not finished: it stays.
  CHECK(c->Get(("/runs/" + paused).c_str())->status == 200);
}
