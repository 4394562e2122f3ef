// SPDX-License-Identifier: MIT
// Issue #19 hardening, over real loopback HTTP: the network policy from the
// config file (allow/deny lists, link-local), URL checks of config workers and
// the tracker, and a callback sender that survives callbacks which would have
// crashed it (stored before the entry checks existed) and goes on delivering.
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "catch.h"
#include "config.h"
#include "support/brokers.h"
#include "support/fake_workers.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"
#include "pull/tracker_config.h"

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::TestServer;
using orch::testing::eventually;
using orch::testing::json_body;

namespace {

std::string error_of(const httplib::Result& r) { return json_body(r)["error"]["message"].get_string(""); }

const char* kLinear = R"({"id": "linear",
  "nodes": {"a": {"type": "transform", "updates": {"x": 1}}},
  "edges": [["__start__", "a"], ["a", "__end__"]]})";

// Writes `json` to a fresh config file and loads it.
orch::Status load_config(const std::string& json, orch::server::ServerConfig* config) {
  const std::string dir = orch::testing::make_temp_dir("orch-config");
  std::ofstream(dir + "/config.json") << json;
  orch::Status loaded = orch::server::load_config_file(dir + "/config.json", config);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);  // each call made one
  return loaded;
}

// An HTTP endpoint that records the callbacks it gets.
class CallbackSink {
 public:
  CallbackSink() {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      received_.push_back(req);
      res.status = 200;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~CallbackSink() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<httplib::Request> received() const {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<httplib::Request> received_;
};

}  // namespace

TEST_CASE("config file: the network keys are read and bad values are named", "[server][hardening]") {
  orch::server::ServerConfig config;
  REQUIRE(load_config(R"({"network": {"allow_hosts": ["127.0.0.1", "*.workers.example", "10.0.0.0/8"],
                                      "deny_hosts": ["10.9.0.0/16"], "deny_link_local": false}})",
                      &config)
              .ok());
  CHECK(config.network.allow_hosts == std::vector<std::string>{"127.0.0.1", "*.workers.example", "10.0.0.0/8"});
  CHECK(config.network.deny_hosts == std::vector<std::string>{"10.9.0.0/16"});
  CHECK_FALSE(config.network.deny_link_local);

  struct Bad {
    const char* json;
    const char* message;
  };
  for (const Bad& b : std::vector<Bad>{
           {R"({"network": []})", "config key 'network' must be an object"},
           {R"({"network": {"allow_hosts": "127.0.0.1"}})", "'network.allow_hosts' must be an array of strings"},
           {R"({"network": {"deny_hosts": [1]}})", "'network.deny_hosts' must be an array of strings"},
           {R"({"network": {"deny_hosts": ["10.0.0.0/33"]}})", "deny_hosts entry '10.0.0.0/33'"},
           {R"({"network": {"allow_hosts": ["bad host"]}})", "allow_hosts entry 'bad host'"},
           {R"({"network": {"allow_hosts": [""]}})", "is empty"},
           {R"({"network": {"deny_link_local": "yes"}})", "'network.deny_link_local' must be true or false"},
           {R"({"network": {"allow": []}})", "unknown config key 'network.allow'"},
       }) {
    INFO(b.json);
    orch::server::ServerConfig c;
    orch::Status s = load_config(b.json, &c);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find(b.message) != std::string::npos);
  }
}

TEST_CASE("an allow list refuses workers and callbacks elsewhere", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.network.allow_hosts = {"127.0.0.1"};
  TestServer server(config);
  auto c = server.client();
  auto refused = c->Post("/workers", R"({"id": "w", "url": "http://localhost:9/webhook"})", "application/json");
  REQUIRE(refused->status == 400);
  CHECK(error_of(refused).find("host localhost is not allowed by the network policy: not in allow_hosts") !=
        std::string::npos);
  CHECK(c->Post("/workers", R"({"id": "w", "url": "http://127.0.0.1:9/webhook"})", "application/json")->status == 201);

  REQUIRE(c->Post("/workflows", kLinear, "application/json")->status == 201);
  auto cb = c->Post("/workflows/linear/run", R"({"callbacks": [{"url": "http://example.com/hook"}]})",
                    "application/json");
  REQUIRE(cb->status == 400);
  CHECK(error_of(cb).find("callbacks[0].url: host example.com is not allowed") != std::string::npos);
  CHECK(c->Post("/workflows/linear/run", R"({"callbacks": [{"url": "http://127.0.0.1:9/hook"}]})",
                "application/json")->status == 201);
}

TEST_CASE("link-local is refused by default and allowed when the config says so", "[server][hardening]") {
  {
    TestServer server;
    auto c = server.client();
    auto r = c->Post("/workers", R"({"id": "m", "url": "http://169.254.169.254/webhook"})", "application/json");
    REQUIRE(r->status == 400);
    CHECK(error_of(r).find("host 169.254.169.254 is not allowed by the network policy: link-local address") !=
          std::string::npos);
    CHECK(json_body(c->Get("/workers")).size() == 0);
  }
  orch::server::ServerConfig config;
  config.network.deny_link_local = false;
  TestServer server(config);
  auto c = server.client();
  CHECK(c->Post("/workers", R"({"id": "m", "url": "http://169.254.169.254/webhook"})", "application/json")->status ==
        201);
}

TEST_CASE("a worker name that resolves to a denied address is not connected to", "[server][hardening]") {
  orch::testing::FakeWorker worker;
  orch::server::ServerConfig config;
  config.network.deny_hosts = {"127.0.0.0/8", "::1/128"};
  TestServer server(config);
  auto c = server.client();
  // The name passes the entry check; the address it resolves to does not.
  const std::string url = "http://localhost:" + std::to_string(worker.port()) + "/webhook";
  REQUIRE(c->Post("/workers", (R"({"id": "w", "url": ")" + url + R"(", "tags": ["t"]})").c_str(),
                  "application/json")->status == 201);
  auto run = c->Post("/runs", R"({"workflow": {
      "nodes": {"t": {"type": "task", "worker_tags": ["t"], "prompt_template": "hi"}},
      "edges": [["__start__", "t"], ["t", "__end__"]]}})", "application/json");
  REQUIRE(run->status == 201);
  const std::string id = json_body(run)["id"].as_string();
  Value done;
  REQUIRE(eventually([&] {
    done = json_body(c->Get(("/runs/" + id).c_str()));
    return done["status"].as_string() != "running";
  }));
  CHECK(done["status"].as_string() == "failed");
  CHECK(done.to_json().find("resolves to") != std::string::npos);
  CHECK(worker.calls().empty());
}

TEST_CASE("config workers and the tracker url go through the URL parser", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.workers = *orch::parse_json(R"([
      {"id": "overflow", "url": "http://127.0.0.1:99999999999/webhook"},
      {"id": "metadata", "url": "http://169.254.169.254/webhook"},
      {"id": "ftp", "url": "ftp://x/webhook"},
      {"id": "good", "url": "http://127.0.0.1:9/webhook"}])");
  TestServer server(config);  // starts: the bad ones are skipped with a warning
  Value list = json_body(server.client()->Get("/workers"));
  REQUIRE(list.size() == 1);
  CHECK((*list.at(0))["id"].as_string() == "good");

  for (const char* bad : {"http://127.0.0.1:99999999999", "http://tick ets", "http://u@h/", "https://[::1"}) {
    INFO(bad);
    auto parsed = orch::server::parse_tracker_config(Value::object({{"url", bad}}), "/tmp");
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().message().find("tracker.url: url") == 0);
  }
  CHECK(orch::server::parse_tracker_config(Value::object({{"url", "http://127.0.0.1:7700/api/"}}), "/tmp").ok());
}

TEST_CASE("the callback sender survives callbacks that used to crash it and goes on", "[server][hardening]") {
  CallbackSink sink;
  TestServer server;
  auto workflow = orch::parse_workflow(*orch::parse_json(kLinear));
  REQUIRE(workflow.ok());
  // Started on the engine directly, as a run stored before the entry checks:
  // a port httplib's Client constructor threw on, another scheme, and a good
  // callback whose headers try to split the request and override Host.
  Value callbacks = Value::array();
  callbacks.push_back(Value::object({{"url", "http://127.0.0.1:99999999999/"}}));
  callbacks.push_back(Value::object({{"url", "ftp://x/"}}));
  callbacks.push_back(Value::object(
      {{"url", sink.url()},
       {"events", Value::array({Value("run.completed")})},
       {"headers", Value::object({{"X-Good", "yes"}, {"X-Bad", "v\r\nX-Injected: 1"}, {"Host", "evil.example"}})}}));
  orch::RunOptions options;
  options.run_id = "stored-before-checks";
  options.host_data = orch::Value::object({{"callbacks", callbacks}});
  REQUIRE(server.app().engine->start_run(*workflow, std::move(options)).ok());

  REQUIRE(eventually([&] { return !sink.received().empty(); }));
  const httplib::Request first = sink.received().front();
  CHECK(first.get_header_value("X-Good") == "yes");
  CHECK_FALSE(first.has_header("X-Bad"));
  CHECK_FALSE(first.has_header("X-Injected"));
  CHECK(first.get_header_value("Host") != "evil.example");
  // The two bad callbacks are given up on (after their retries), counted as failed.
  REQUIRE(eventually([&] { return server.app().metrics.callbacks_failed.load() >= 2; }));

  // The sender is still there: the next run's callback arrives too.
  auto c = server.client();
  REQUIRE(c->Post("/workflows", kLinear, "application/json")->status == 201);
  const std::string body = R"({"callbacks": [{"url": ")" + sink.url() + R"(", "events": ["run.completed"]}]})";
  REQUIRE(c->Post("/workflows/linear/run", body, "application/json")->status == 201);
  REQUIRE(eventually([&] { return sink.received().size() >= 2; }));
  CHECK(c->Get("/health")->status == 200);
}

TEST_CASE("route transform and interrupt nodes are called back for as step.completed with their output", "[server][callbacks]") {
  // NullBoiler (api 3.8-3.9) calls back step.completed for every node type,
  // data = the step's output_json; orch records task_result for them.
  CallbackSink sink;
  TestServer server;
  auto c = server.client();
  const std::string body = R"({"workflow": {"state_schema": {"go": {}},
      "nodes": {"set": {"type": "transform", "updates": {"go": "yes"}},
                "pick": {"type": "route", "input": "state.go", "routes": {"yes": "stop"}},
                "stop": {"type": "interrupt"}},
      "edges": [["__start__", "set"], ["set", "pick"], ["pick:yes", "stop"], ["stop", "__end__"]]},
      "callbacks": [{"url": ")" + sink.url() + R"(", "events": ["step.completed", "run.interrupted"]}]})";
  auto started = c->Post("/runs", body, "application/json");
  REQUIRE(started);
  INFO(started->body);
  REQUIRE(started->status == 201);
  const std::string id = json_body(started)["id"].as_string();
  REQUIRE(eventually([&] { return sink.received().size() >= 4; }));
  std::map<std::string, Value> by_step;
  int interrupted = 0;
  for (const httplib::Request& r : sink.received()) {
    Value v = *orch::parse_json(r.body);
    CHECK(v["run_id"].as_string() == id);
    if (v["event"].as_string() == "run.interrupted") {
      ++interrupted;
      continue;
    }
    REQUIRE(v["event"].as_string() == "step.completed");
    by_step[v["step_id"].as_string()] = v["data"];
  }
  CHECK(interrupted == 1);
  REQUIRE(by_step.size() == 3);
  std::set<std::string> outputs;
  for (const auto& [step, data] : by_step) outputs.insert(data.to_json());
  CHECK(outputs == std::set<std::string>{R"({"go":"yes"})", R"({"route":"yes"})", R"({"interrupted":true})"});
  // Each names a step of the run.
  Value steps = json_body(c->Get(("/runs/" + id + "/steps").c_str()));
  std::set<std::string> ids;
  for (const Value& s : steps.as_array()) ids.insert(s["id"].as_string());
  for (const auto& [step, data] : by_step) CHECK(ids.count(step) == 1);
}
