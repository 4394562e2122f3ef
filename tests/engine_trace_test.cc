// SPDX-License-Identifier: MIT
// The engine's TraceObserver (orch/trace.h): the span tree of a run, retries,
// sampling, traceparent parsing and propagation to workers.
#include <algorithm>
#include <mutex>

#include "catch.h"
#include "orch/engine.h"
#include "orch/trace.h"
#include "orch/dispatcher.h"
#include "orch/workflow.h"

using orch::Span;
using orch::SpanKind;
using orch::TraceContext;
using orch::Value;

namespace {

class RecordingObserver : public orch::TraceObserver {
 public:
  bool sample = true;
  bool should_sample(const std::string& trace_id, const TraceContext* parent) override {
    std::lock_guard<std::mutex> lock(mu_);
    sampled_parents_.push_back(parent != nullptr ? parent->span_id : "");
    (void)trace_id;
    return sample && (parent == nullptr || parent->sampled);
  }
  void on_span_end(Span span) override {
    std::lock_guard<std::mutex> lock(mu_);
    spans_.push_back(std::move(span));
  }
  std::vector<Span> spans() {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_;
  }

 private:
  std::mutex mu_;
  std::vector<Span> spans_;
  std::vector<std::string> sampled_parents_;
};

std::vector<Span> of_kind(const std::vector<Span>& spans, SpanKind kind) {
  std::vector<Span> out;
  std::copy_if(spans.begin(), spans.end(), std::back_inserter(out), [kind](const Span& s) { return s.kind == kind; });
  return out;
}

const Span* by_id(const std::vector<Span>& spans, const std::string& id) {
  for (const Span& s : spans) {
    if (s.span_id == id) return &s;
  }
  return nullptr;
}

struct Harness {
  std::shared_ptr<RecordingObserver> observer = std::make_shared<RecordingObserver>();
  std::shared_ptr<orch::InProcessWorkers> workers = std::make_shared<orch::InProcessWorkers>();
  std::shared_ptr<orch::Store> store = orch::new_memory_store();
  std::unique_ptr<orch::Engine> engine;
  std::mutex mu;
  std::vector<std::string> traceparents;  // what the workers received
  int calls = 0;

  explicit Harness(bool with_tracer = true, int fail_first = 0) {
    workers->add("w1", {}, [this, fail_first](const orch::WorkerRequest& r) {
      std::lock_guard<std::mutex> lock(mu);
      traceparents.push_back(r.traceparent);
      orch::WorkerReply reply;
      if (++calls <= fail_first) {
        reply.status = orch::Status::unavailable("worker is warming up");
        return reply;
      }
      reply.output = "done " + r.node_name;
      reply.envelope = Value::object({{"usage", Value::object({{"input_tokens", 3}, {"output_tokens", 5}})}});
      return reply;
    });
    orch::EngineOptions options;
    options.store = store;
    options.dispatcher = workers;
    if (with_tracer) options.tracer = observer;
    engine = std::move(orch::Engine::open(options)).value();
  }

  orch::RunRecord run(const std::string& definition, const std::string& traceparent = "") {
    auto wf = orch::parse_workflow_json(definition);
    REQUIRE(wf.ok());
    orch::RunOptions options;
    options.traceparent = traceparent;
    auto id = engine->start_run(*wf, options);
    REQUIRE(id.ok());
    auto done = engine->wait(*id, std::chrono::seconds(20));
    REQUIRE(done.ok());
    return *done;
  }
};

const char* kTwoSteps = R"({"nodes": {
    "plan": {"type": "task", "prompt_template": "plan it"},
    "write": {"type": "task", "prompt_template": "write it"}},
  "edges": [["__start__", "plan"], ["plan", "write"], ["write", "__end__"]]})";

}  // namespace

TEST_CASE("traceparent: valid headers parse, malformed ones are refused", "[trace]") {
  auto ok = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(ok);
  CHECK(ok->trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(ok->span_id == "00f067aa0ba902b7");
  CHECK(ok->sampled);
  CHECK(ok->traceparent() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK_FALSE(TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled);
  // A later version may append fields.
  CHECK(TraceContext::from_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
  for (const char* bad : {"", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                          "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n"}) {
    INFO(bad);
    CHECK_FALSE(TraceContext::from_traceparent(bad));
  }
  CHECK(orch::new_trace_id().size() == 32);
  CHECK(orch::new_span_id().size() == 16);
  CHECK(orch::new_trace_id() != orch::new_trace_id());
}

TEST_CASE("a traced run reports run, superstep, node and worker call spans as a tree", "[trace][engine]") {
  Harness h;
  orch::RunRecord run = h.run(kTwoSteps, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(run.status == orch::RunStatus::kCompleted);
  std::vector<Span> spans = h.observer->spans();
  auto runs = of_kind(spans, SpanKind::kRun);
  auto supersteps = of_kind(spans, SpanKind::kSuperstep);
  auto nodes = of_kind(spans, SpanKind::kNode);
  auto calls = of_kind(spans, SpanKind::kWorkerCall);
  REQUIRE(runs.size() == 1);
  REQUIRE(supersteps.size() == 2);
  REQUIRE(nodes.size() == 2);
  REQUIRE(calls.size() == 2);
  // The run continues the caller's trace, under the caller's span.
  const Span& r = runs[0];
  CHECK(r.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(r.parent_span_id == "00f067aa0ba902b7");
  CHECK(r.parent_is_remote);
  CHECK(r.attribute("orch.run.id")->as_string() == run.id);
  CHECK(r.attribute("orch.status")->as_string() == "completed");
  CHECK(r.attribute("gen_ai.usage.input_tokens")->as_int() == 6);
  for (const Span& s : spans) CHECK(s.trace_id == r.trace_id);
  for (const Span& s : supersteps) CHECK(s.parent_span_id == r.span_id);
  for (const Span& n : nodes) {
    const Span* parent = by_id(spans, n.parent_span_id);
    REQUIRE(parent != nullptr);
    CHECK(parent->kind == SpanKind::kSuperstep);
    CHECK(n.attribute("orch.node.type")->as_string() == "task");
    CHECK(n.attribute("orch.node.attempt")->as_int() == 1);
    CHECK(n.attribute("orch.status")->as_string() == "completed");
    CHECK(n.attribute("gen_ai.usage.output_tokens")->as_int() == 5);
    CHECK(n.name == "node " + n.attribute("orch.node.name")->as_string());
    CHECK_FALSE(n.error);
  }
  for (const Span& c : calls) {
    const Span* parent = by_id(spans, c.parent_span_id);
    REQUIRE(parent != nullptr);
    CHECK(parent->kind == SpanKind::kNode);
    CHECK(parent->attribute("orch.node.name")->as_string() == c.attribute("orch.node.name")->as_string());
    CHECK(c.attribute("orch.worker.id")->as_string() == "w1");
    CHECK(c.end_unix_nanos >= c.start_unix_nanos);
  }
  // Each worker received its call span's traceparent.
  std::lock_guard<std::mutex> lock(h.mu);
  REQUIRE(h.traceparents.size() == 2);
  for (const std::string& tp : h.traceparents) {
    auto ctx = TraceContext::from_traceparent(tp);
    REQUIRE(ctx);
    CHECK(ctx->trace_id == r.trace_id);
    const Span* call = by_id(spans, ctx->span_id);
    REQUIRE(call != nullptr);
    CHECK(call->kind == SpanKind::kWorkerCall);
  }
}

TEST_CASE("a failed attempt is an error span, its retry a new node span", "[trace][engine]") {
  Harness h(true, 1);
  orch::RunRecord run = h.run(R"({"nodes": {
      "a": {"type": "task", "prompt_template": "x", "retry": {"max_attempts": 2, "initial_interval_ms": 1}}},
    "edges": [["__start__", "a"], ["a", "__end__"]]})");
  REQUIRE(run.status == orch::RunStatus::kCompleted);
  auto spans = h.observer->spans();
  auto nodes = of_kind(spans, SpanKind::kNode);
  REQUIRE(nodes.size() == 2);
  std::sort(nodes.begin(), nodes.end(), [](const Span& x, const Span& y) {
    return x.attribute("orch.node.attempt")->as_int() < y.attribute("orch.node.attempt")->as_int();
  });
  CHECK(nodes[0].error);
  CHECK(nodes[0].error_message == "worker is warming up");
  CHECK(nodes[0].attribute("orch.status")->as_string() == "retrying");
  CHECK(nodes[1].attribute("orch.node.attempt")->as_int() == 2);
  CHECK_FALSE(nodes[1].error);
  auto calls = of_kind(spans, SpanKind::kWorkerCall);
  REQUIRE(calls.size() == 2);
  CHECK(std::count_if(calls.begin(), calls.end(), [](const Span& s) { return s.error; }) == 1);
}

TEST_CASE("a failed run ends its spans with the error", "[trace][engine]") {
  Harness h(true, 100);
  orch::RunRecord run = h.run(R"({"nodes": {"a": {"type": "task", "prompt_template": "x", "retry": {"max_attempts": 1}}},
    "edges": [["__start__", "a"], ["a", "__end__"]]})");
  REQUIRE(run.status == orch::RunStatus::kFailed);
  auto spans = h.observer->spans();
  auto runs = of_kind(spans, SpanKind::kRun);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].error);
  CHECK(runs[0].error_message.find("worker is warming up") != std::string::npos);
  CHECK(runs[0].attribute("orch.status")->as_string() == "failed");
  REQUIRE(of_kind(spans, SpanKind::kSuperstep).size() == 1);
  CHECK(of_kind(spans, SpanKind::kSuperstep)[0].error);
}

TEST_CASE("unsampled runs report nothing, workers still get an unsampled traceparent", "[trace][engine]") {
  Harness h;
  h.observer->sample = false;
  h.run(kTwoSteps);
  CHECK(h.observer->spans().empty());
  std::lock_guard<std::mutex> lock(h.mu);
  REQUIRE(h.traceparents.size() == 2);
  auto ctx = TraceContext::from_traceparent(h.traceparents[0]);
  REQUIRE(ctx);
  CHECK_FALSE(ctx->sampled);
}

TEST_CASE("a malformed traceparent starts a new trace, and no tracer means no trace context", "[trace][engine]") {
  Harness traced;
  traced.run(kTwoSteps, "00-not-a-trace-01");
  auto runs = of_kind(traced.observer->spans(), SpanKind::kRun);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].parent_span_id.empty());
  CHECK_FALSE(runs[0].parent_is_remote);

  Harness untraced(false);
  untraced.run(kTwoSteps, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  std::lock_guard<std::mutex> lock(untraced.mu);
  for (const std::string& tp : untraced.traceparents) CHECK(tp.empty());
}

TEST_CASE("a subgraph's child run is a run span under its node's span, in the same trace", "[trace][engine]") {
  Harness h;
  orch::WorkflowRecord child;
  child.id = "child";
  child.definition = *orch::parse_json(R"({"nodes": {"set": {"type": "transform", "updates": {"output": "from child"}}},
    "edges": [["__start__", "set"], ["set", "__end__"]]})");
  REQUIRE(h.store->put_workflow(child, true).ok());
  orch::RunRecord run = h.run(R"({"nodes": {"sub": {"type": "subgraph", "workflow_id": "child", "output_key": "output"}},
    "edges": [["__start__", "sub"], ["sub", "__end__"]]})");
  REQUIRE(run.status == orch::RunStatus::kCompleted);
  auto spans = h.observer->spans();
  auto runs = of_kind(spans, SpanKind::kRun);
  REQUIRE(runs.size() == 2);
  const Span& parent = runs[0].parent_span_id.empty() ? runs[0] : runs[1];
  const Span& child_run = runs[0].parent_span_id.empty() ? runs[1] : runs[0];
  CHECK(parent.attribute("orch.run.id")->as_string() == run.id);
  CHECK(child_run.trace_id == parent.trace_id);
  const Span* sub = by_id(spans, child_run.parent_span_id);
  REQUIRE(sub != nullptr);
  CHECK(sub->kind == SpanKind::kNode);
  CHECK(sub->name == "node sub");
  CHECK(sub->attribute("orch.node.type")->as_string() == "subgraph");
  CHECK(child_run.attribute("orch.run.parent_id")->as_string() == run.id);
  CHECK_FALSE(child_run.parent_is_remote);
  auto nodes = of_kind(spans, SpanKind::kNode);
  CHECK(std::count_if(nodes.begin(), nodes.end(), [](const Span& n) { return n.name == "node set"; }) == 1);
}
