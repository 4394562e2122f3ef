// SPDX-License-Identifier: MIT
// OTLP trace export from `orch serve`: a run against a fake OTLP/HTTP
// collector, the span tree it receives, traceparent in and out, a collector
// that fails or hangs (never blocking a run), the queue bound, and the
// config + OTEL_* environment rules.
#include <httplib.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "catch.h"
#include "support/fake_workers.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"
#include "telemetry/trace_config.h"

using orch::Value;
using orch::testing::eventually;
using orch::testing::json_body;

namespace {

// An OTLP/HTTP collector on loopback: keeps every span it is sent (flattened,
// with its resource's service.name), or fails or hangs as asked.
class FakeCollector {
 public:
  enum class Mode { kAccept, kFail, kHang };
  explicit FakeCollector(Mode mode = Mode::kAccept) : mode_(mode) {
    server_.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(mu_);
      ++requests_;
      headers_.push_back(req.get_header_value("x-collector-key"));
      if (mode_ == Mode::kHang) {
        release_.wait(lock, [this] { return released_; });
        return;
      }
      if (mode_ == Mode::kFail) {
        res.status = 503;
        return;
      }
      auto doc = orch::parse_json(req.body);
      if (!doc.ok()) {
        res.status = 400;
        return;
      }
      for (const Value& rs : (*doc)["resourceSpans"].as_array()) {
        std::string service;
        for (const Value& a : rs["resource"]["attributes"].as_array()) {
          if (a["key"].as_string() == "service.name") service = a["value"]["stringValue"].as_string();
        }
        for (const Value& ss : rs["scopeSpans"].as_array()) {
          for (Value span : ss["spans"].as_array()) {
            span.set("service", service);
            spans_.push_back(span);
          }
        }
      }
      res.set_content("{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeCollector() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    release_.notify_all();
    server_.stop();
    thread_.join();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces"; }
  std::vector<Value> spans() {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_;
  }
  int requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  std::vector<std::string> key_headers() {
    std::lock_guard<std::mutex> lock(mu_);
    return headers_;
  }

 private:
  Mode mode_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable release_;
  bool released_ = false;
  int requests_ = 0;
  std::vector<Value> spans_;
  std::vector<std::string> headers_;
};

std::string attribute(const Value& span, const std::string& key) {
  for (const Value& a : span["attributes"].as_array()) {
    if (a["key"].as_string() != key) continue;
    const Value& v = a["value"];
    if (v["stringValue"].is_string()) return v["stringValue"].as_string();
    if (v["intValue"].is_string()) return v["intValue"].as_string();
    return v.to_json();
  }
  return "";
}

const Value* span_by_id(const std::vector<Value>& spans, const std::string& id) {
  for (const Value& s : spans) {
    if (s["spanId"].as_string() == id) return &s;
  }
  return nullptr;
}

orch::server::ServerConfig traced_config(const std::string& endpoint, const orch::testing::FakeWorker& worker) {
  orch::server::ServerConfig config;
  config.tracing.enabled = true;
  config.tracing.endpoint = endpoint;
  config.tracing.service_name = "orch-under-test";
  config.tracing.export_interval_ms = 20;
  config.tracing.export_timeout_ms = 300;
  config.tracing.headers = {{"x-collector-key", "collector-secret"}};
  config.workers = *orch::parse_json(R"([{"id": "writer-1", "url": ")" + worker.url() + R"(", "tags": ["writer"]}])");
  return config;
}

const char* kRunBody = R"({"workflow": {
    "state_schema": {"draft": {"type": "string"}, "review": {"type": "string"}},
    "nodes": {"draft": {"type": "task", "worker_tags": ["writer"], "output_key": "draft", "prompt_template": "draft"},
              "review": {"type": "task", "worker_tags": ["writer"], "output_key": "review", "prompt_template": "review"}},
    "edges": [["__start__", "draft"], ["draft", "review"], ["review", "__end__"]]}})";

std::string start_run(httplib::Client& c, const httplib::Headers& headers = {}) {
  auto r = c.Post("/runs", headers, kRunBody, "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 201);
  return json_body(r)["id"].as_string();
}

void wait_completed(httplib::Client& c, const std::string& run) {
  REQUIRE(eventually([&] { return json_body(c.Get("/runs/" + run))["status"].as_string() == "completed"; }));
}

}  // namespace

TEST_CASE("a run's spans reach an OTLP collector as a tree, continuing the caller's trace", "[server][tracing]") {
  FakeCollector collector;
  orch::testing::FakeWorker worker;
  orch::testing::TestServer server(traced_config(collector.endpoint(), worker));
  auto c = server.client();
  const std::string caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736", caller_span = "00f067aa0ba902b7";
  const std::string run = start_run(*c, {{"traceparent", "00-" + caller_trace + "-" + caller_span + "-01"}});
  wait_completed(*c, run);
  // run + 2 supersteps + 2 nodes + 2 worker calls.
  REQUIRE(eventually([&] { return collector.spans().size() >= 7; }));
  std::vector<Value> spans = collector.spans();
  REQUIRE(spans.size() == 7);
  std::map<std::string, std::vector<Value>> by_kind;
  for (const Value& s : spans) {
    by_kind[attribute(s, "orch.span.kind")].push_back(s);
    CHECK(s["traceId"].as_string() == caller_trace);
    CHECK(s["service"].as_string() == "orch-under-test");
    CHECK(attribute(s, "orch.run.id") == run);
  }
  REQUIRE(by_kind["run"].size() == 1);
  REQUIRE(by_kind["superstep"].size() == 2);
  REQUIRE(by_kind["node"].size() == 2);
  REQUIRE(by_kind["worker_call"].size() == 2);
  const Value& run_span = by_kind["run"][0];
  CHECK(run_span["parentSpanId"].as_string() == caller_span);
  CHECK(run_span["name"].as_string() == "run");
  CHECK(run_span["kind"].as_int() == 2);  // SERVER: it serves the caller's request
  CHECK(attribute(run_span, "orch.status") == "completed");
  CHECK(run_span["status"]["code"].as_int() == 1);
  for (const Value& s : by_kind["superstep"]) CHECK(s["parentSpanId"].as_string() == run_span["spanId"].as_string());
  std::set<std::string> node_names;
  for (const Value& n : by_kind["node"]) {
    const Value* parent = span_by_id(spans, n["parentSpanId"].as_string());
    REQUIRE(parent != nullptr);
    CHECK(attribute(*parent, "orch.span.kind") == "superstep");
    node_names.insert(attribute(n, "orch.node.name"));
    CHECK(attribute(n, "orch.node.type") == "task");
    CHECK(attribute(n, "orch.node.attempt") == "1");
  }
  CHECK(node_names == std::set<std::string>{"draft", "review"});
  for (const Value& w : by_kind["worker_call"]) {
    const Value* parent = span_by_id(spans, w["parentSpanId"].as_string());
    REQUIRE(parent != nullptr);
    CHECK(attribute(*parent, "orch.span.kind") == "node");
    CHECK(attribute(w, "orch.worker.id") == "writer-1");
    CHECK(attribute(w, "orch.worker.protocol") == "webhook");
    CHECK(w["name"].as_string() == "worker webhook");
    CHECK(w["kind"].as_int() == 3);  // CLIENT
    CHECK(std::stoll(w["endTimeUnixNano"].as_string()) >= std::stoll(w["startTimeUnixNano"].as_string()));
  }
  // The worker got its call span's traceparent; the collector the configured header.
  auto calls = worker.calls();
  REQUIRE(calls.size() == 2);
  for (const auto& call : calls) {
    auto ctx = orch::TraceContext::from_traceparent(call.header("traceparent"));
    REQUIRE(ctx);
    CHECK(ctx->trace_id == caller_trace);
    const Value* span = span_by_id(spans, ctx->span_id);
    REQUIRE(span != nullptr);
    CHECK(attribute(*span, "orch.span.kind") == "worker_call");
  }
  for (const std::string& key : collector.key_headers()) CHECK(key == "collector-secret");
  CHECK(json_body(c->Get("/health"))["status"].as_string() == "ok");
  // Counted once the collector's answer is back (just after it stored them).
  CHECK(eventually([&] {
    auto metrics = c->Get("/metrics");
    return metrics && metrics->body.find("orch_trace_spans_exported_total 7\n") != std::string::npos;
  }));
}

TEST_CASE("a malformed traceparent on POST /runs starts a new trace", "[server][tracing]") {
  FakeCollector collector;
  orch::testing::FakeWorker worker;
  orch::testing::TestServer server(traced_config(collector.endpoint(), worker));
  auto c = server.client();
  for (const char* bad : {"00-zz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "\x01\x02", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-trailing"}) {
    const std::string run = start_run(*c, {{"traceparent", bad}});
    wait_completed(*c, run);
  }
  REQUIRE(eventually([&] { return collector.spans().size() >= 28; }));
  for (const Value& s : collector.spans()) {
    if (attribute(s, "orch.span.kind") != "run") continue;
    CHECK(s.find("parentSpanId") == nullptr);
    CHECK(s["traceId"].as_string() != "4bf92f3577b34da6a3ce929d0e0e4736");
  }
}

TEST_CASE("a failing or hanging collector never holds a run back, and is counted", "[server][tracing]") {
  for (auto mode : {FakeCollector::Mode::kFail, FakeCollector::Mode::kHang}) {
    FakeCollector collector(mode);
    orch::testing::FakeWorker worker;
    auto config = traced_config(collector.endpoint(), worker);
    config.tracing.max_queue_spans = 4;  // a run makes 7: some are dropped at once
    config.tracing.max_batch_spans = 2;
    {
      orch::testing::TestServer server(config);
      auto c = server.client();
      for (int i = 0; i < 3; ++i) wait_completed(*c, start_run(*c));
      REQUIRE(eventually([&] {
        auto m = c->Get("/metrics");
        return m && m->body.find("orch_trace_exports_failed_total 0") == std::string::npos &&
               m->body.find("orch_trace_spans_dropped_total 0") == std::string::npos;
      }));
      CHECK(collector.requests() >= 1);
    }  // the server stops although the collector still hangs (export_timeout_ms)
  }
}

TEST_CASE("tracing config: OTEL_* environment as the SDKs read it, the file winning", "[server][tracing]") {
  std::map<std::string, std::string> env;
  orch::server::EnvLookup lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  std::vector<std::string> problems;
  auto off = orch::server::resolve_tracing_config(Value(), lookup, &problems);
  CHECK_FALSE(off.enabled);
  CHECK(problems.empty());

  env = {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"},
         {"OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b , tenant=t1"},
         {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "tenant=t2"},
         {"OTEL_SERVICE_NAME", "svc"},
         {"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=ignored"},
         {"OTEL_TRACES_SAMPLER", "parentbased_traceidratio"},
         {"OTEL_TRACES_SAMPLER_ARG", "0.25"},
         {"OTEL_BSP_MAX_QUEUE_SIZE", "100"},
         {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"}};
  auto c = orch::server::resolve_tracing_config(Value(), lookup, &problems);
  CHECK(problems.empty());
  CHECK(c.enabled);
  CHECK(c.endpoint == "http://collector:4318/v1/traces");
  CHECK(c.headers == std::vector<std::pair<std::string, std::string>>{{"api-key", "a b"}, {"tenant", "t2"}});
  CHECK(c.service_name == "svc");
  CHECK(c.resource_attributes == std::vector<std::pair<std::string, std::string>>{{"deployment.environment", "prod"}});
  CHECK(c.sampler == "parentbased_traceidratio");
  CHECK(c.sampler_ratio == 0.25);
  CHECK(c.max_queue_spans == 100);
  CHECK(c.max_batch_spans == 10);

  env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "https://traces.example/v1/traces";
  Value file = *orch::parse_json(R"({"sampler": "always_on", "service_name": "from-file"})");
  c = orch::server::resolve_tracing_config(file, lookup, &problems);
  CHECK(problems.empty());
  CHECK(c.endpoint == "https://traces.example/v1/traces");  // the signal's own variable, as is
  CHECK(c.sampler == "always_on");                          // the file wins
  CHECK(c.service_name == "from-file");

  env["OTEL_SDK_DISABLED"] = "TRUE";
  CHECK_FALSE(orch::server::resolve_tracing_config(file, lookup, &problems).enabled);
  env.erase("OTEL_SDK_DISABLED");
  env["OTEL_TRACES_EXPORTER"] = "none";
  CHECK_FALSE(orch::server::resolve_tracing_config(file, lookup, &problems).enabled);
  CHECK(problems.empty());

  // Hostile values: each a problem naming its source, never a crash. A
  // header's value is never repeated (it holds credentials).
  env = {{"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x"},
         {"OTEL_EXPORTER_OTLP_HEADERS", "broken-entry-secret-value"},
         {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=secret-value%zz"},
         {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
         {"OTEL_TRACES_SAMPLER", "jaeger_remote"},
         {"OTEL_TRACES_SAMPLER_ARG", "nan"},
         {"OTEL_BSP_MAX_QUEUE_SIZE", "-1"},
         {"OTEL_BSP_SCHEDULE_DELAY", "99999999999999999999"},
         {"OTEL_TRACES_EXPORTER", "zipkin"}};
  problems.clear();
  orch::server::resolve_tracing_config(Value(), lookup, &problems);
  std::string all;
  for (const std::string& p : problems) all += p + "\n";
  INFO(all);
  CHECK(problems.size() == 9);
  for (const char* source : {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                             "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER:", "OTEL_TRACES_SAMPLER_ARG",
                             "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_TRACES_EXPORTER"}) {
    CHECK(all.find(source) != std::string::npos);
  }
  CHECK(all.find("secret-value") == std::string::npos);
  env.clear();
  problems.clear();
  orch::server::resolve_tracing_config(*orch::parse_json(R"({"endpoint": "http://c/v1/traces", "headers": {"bad name": "v", "ok": "a\r\nInjected: 1"},
      "max_queue_spans": 10, "max_batch_spans": 20, "sampler_arg": -1, "enabled": "yes", "colour": 1})"),
                                       lookup, &problems);
  CHECK(problems.size() == 6);
}
