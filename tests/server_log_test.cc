// SPDX-License-Identifier: MIT
// Structured logs: one line per request and per run transition, text or
// JSON, levels, and no secret ever in a line (the API token, a worker's
// token, a callback's HMAC secret) although a run used them all.
#include <httplib.h>

#include <mutex>
#include <thread>

#include "catch.h"
#include "log/log.h"
#include "support/fake_workers.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"

using orch::Value;
using orch::server::LogFormat;
using orch::server::LogLevel;
using orch::testing::eventually;
using orch::testing::json_body;

namespace {

// Captures the process's log lines for the scope of a test.
class LogCapture {
 public:
  LogCapture(LogLevel level, LogFormat format) {
    orch::server::configure_log(level, format);
    orch::server::set_log_sink([this](const std::string& line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(line);
    });
  }
  ~LogCapture() {
    orch::server::set_log_sink(nullptr);
    orch::server::configure_log(LogLevel::kInfo, LogFormat::kText);
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }
  std::vector<std::string> with(const std::string& text) {
    std::vector<std::string> out;
    for (const std::string& l : lines()) {
      if (l.find(text) != std::string::npos) out.push_back(l);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

// A callback receiver on loopback.
struct CallbackSink {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  int received = 0;
  CallbackSink() {
    server.Post("/hook", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu);
      ++received;
      res.status = 200;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~CallbackSink() {
    server.stop();
    thread.join();
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu);
    return received;
  }
};

const char* kApiToken = "api-TOKEN-0f9a8b7c6d5e";
const char* kWorkerToken = "worker-TOKEN-1a2b3c4d5e6f";
const char* kHmacSecret = "hmac-SECRET-9z8y7x6w5v";

}  // namespace

TEST_CASE("a run that used every secret leaves none in the logs, in either format", "[server][log]") {
  for (LogFormat format : {LogFormat::kText, LogFormat::kJson}) {
    LogCapture capture(LogLevel::kDebug, format);
    orch::testing::FakeWorker worker;
    CallbackSink sink;
    orch::server::ServerConfig config;
    config.api_token = kApiToken;
    config.workers = *orch::parse_json(std::string(R"([{"id": "w1", "url": ")") + worker.url() + R"(", "token": ")" +
                                       kWorkerToken + R"(", "tags": ["writer"]}])");
    {
      orch::testing::TestServer server(config);
      auto c = server.client();
      c->set_bearer_token_auth(kApiToken);
      const std::string body = std::string(R"({"workflow": {
          "nodes": {"write": {"type": "task", "worker_tags": ["writer"], "prompt_template": "go"}},
          "edges": [["__start__", "write"], ["write", "__end__"]]},
        "callbacks": [{"url": "http://127.0.0.1:)") + std::to_string(sink.port) + R"(/hook", "hmac_secret": ")" +
                               kHmacSecret + R"(", "headers": {"X-Api-Key": "callback-header-SECRET"}}]})";
      auto started = c->Post("/runs", body, "application/json");
      REQUIRE(started);
      REQUIRE(started->status == 201);
      const std::string run = json_body(started)["id"].as_string();
      REQUIRE(eventually([&] { return json_body(c->Get("/runs/" + run))["status"].as_string() == "completed"; }));
      REQUIRE(eventually([&] { return sink.count() >= 1; }));
      REQUIRE(worker.calls().size() == 1);
      CHECK(worker.calls()[0].header("authorization") == std::string("Bearer ") + kWorkerToken);
      // A refused request with the wrong token, and a worker registered with one.
      httplib::Client wrong("127.0.0.1", server.port());
      wrong.set_bearer_token_auth("wrong-TOKEN-guess");
      CHECK(wrong.Get("/runs")->status == 401);
      CHECK(c->Post("/workers", R"({"id": "w2", "url": "http://127.0.0.1:9/webhook", "token": "registered-TOKEN-77"})",
                    "application/json")->status == 201);
      CHECK(c->Get("/workers?token=query-TOKEN-88")->status == 200);
      REQUIRE(eventually([&] { return !capture.with("run.completed").empty(); }));
      // One line per request: method, path, status, duration, request id.
      // (A line is written once its response is: the last may lag its answer.)
      CHECK(eventually([&] { return capture.with("http.request").size() >= 5; }));
      REQUIRE(eventually([&] { return !capture.with("/workers?").empty() || !capture.with("GET path=/workers").empty() ||
                                      !capture.with(R"("method":"GET","path":"/workers")").empty(); }));
      auto post = capture.with(format == LogFormat::kJson ? R"("path":"/runs","route":"/runs","status":201)" : "path=/runs route=/runs status=201");
      REQUIRE(post.size() == 1);
      if (format == LogFormat::kJson) {
        Value line = *orch::parse_json(post[0]);
        CHECK(line["level"].as_string() == "info");
        CHECK(line["msg"].as_string() == "http.request");
        CHECK(line["method"].as_string() == "POST");
        CHECK(line["duration_ms"].is_number());
        CHECK(line["request_id"].as_string() == started->get_header_value("X-Request-Id"));
        CHECK(line["remote"].as_string() == "127.0.0.1");
      } else {
        CHECK(post[0].find(" info http.request method=POST ") != std::string::npos);
        CHECK(post[0].find("request_id=" + started->get_header_value("X-Request-Id")) != std::string::npos);
        CHECK(post[0].find("duration_ms=") != std::string::npos);
      }
      CHECK(capture.with("status=401").size() + capture.with(R"("status":401)").size() == 1);
      // One line per run transition.
      CHECK(capture.with("run.started").size() == 1);
      CHECK(capture.with("run.completed")[0].find(run) != std::string::npos);
    }
    std::vector<std::string> lines = capture.lines();
    REQUIRE(!lines.empty());
    for (const std::string& line : lines) {
      INFO(line);
      for (const char* secret : {kApiToken, kWorkerToken, kHmacSecret, "callback-header-SECRET", "wrong-TOKEN-guess",
                                 "registered-TOKEN-77", "query-TOKEN-88"}) {
        CHECK(line.find(secret) == std::string::npos);
      }
      if (format == LogFormat::kJson) CHECK(orch::parse_json(line).ok());
    }
  }
}

TEST_CASE("log levels filter, and a hostile message cannot forge a field or a line", "[server][log]") {
  {
    LogCapture capture(LogLevel::kWarn, LogFormat::kText);
    orch::server::log(LogLevel::kInfo, "quiet");
    orch::server::log(LogLevel::kError, "loud", {{"n", 1}});
    REQUIRE(capture.lines().size() == 1);
    CHECK(capture.lines()[0].find(" error loud n=1") != std::string::npos);
  }
  const std::string text = orch::server::format_log_line(
      LogFormat::kText, 0, LogLevel::kInfo, "run.failed",
      {{"error", "boom\n1970-01-01T00:00:00.000Z error forged=1"}, {"run_id", "a b"}, {"skipped", Value()}});
  CHECK(text.find('\n') == std::string::npos);
  CHECK(text == R"(1970-01-01T00:00:00.000Z info run.failed error="boom\n1970-01-01T00:00:00.000Z error forged=1" run_id="a b")");
  const std::string json = orch::server::format_log_line(LogFormat::kJson, 1500, LogLevel::kWarn, "x",
                                                         {{"msg", "not the message"}, {"k", 2}});
  CHECK(json == R"({"ts":"1970-01-01T00:00:01.500Z","level":"warn","msg":"x","k":2})");
  CHECK(orch::server::log_level_from_name("verbose") == std::nullopt);
  CHECK(orch::server::log_format_from_name("json") == LogFormat::kJson);
}
