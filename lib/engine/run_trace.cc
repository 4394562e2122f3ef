// SPDX-License-Identifier: MIT
#include "engine/run_trace.h"

#include <chrono>

namespace orch::internal {
namespace {

int64_t now_unix_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void add_usage(Span* span, const Value& usage) {
  if (!usage.is_object()) return;
  span->attributes.emplace_back("gen_ai.usage.input_tokens", usage["input_tokens"].get_int(0));
  span->attributes.emplace_back("gen_ai.usage.output_tokens", usage["output_tokens"].get_int(0));
}

}  // namespace

RunTrace::RunTrace(std::shared_ptr<TraceObserver> observer, const RunRecord& run, const std::string& parent_traceparent)
    : observer_(std::move(observer)), run_id_(run.id) {
  // (run_id_ is a Value: each span's copy shares its string.)
  std::optional<TraceContext> parent = TraceContext::from_traceparent(parent_traceparent);
  const std::string trace_id = parent ? parent->trace_id : new_trace_id();
  sampled_ = observer_->should_sample(trace_id, parent ? &*parent : nullptr);
  run_ = open_span(SpanKind::kRun, "run", parent ? parent->span_id : std::string());
  run_.span.trace_id = trace_id;
  // A subgraph child's parent is its parent run's node span, in this process.
  run_.span.parent_is_remote = parent.has_value() && run.parent_run_id.empty();
  run_.span.attributes.emplace_back("orch.workflow.id", run.workflow_id);
  if (!run.parent_run_id.empty()) run_.span.attributes.emplace_back("orch.run.parent_id", run.parent_run_id);
}

RunTrace::OpenSpan RunTrace::open_span(SpanKind kind, std::string name, const std::string& parent_span_id) {
  OpenSpan s;
  s.open = true;
  s.span.kind = kind;
  s.span.name = std::move(name);
  s.span.trace_id = run_.span.trace_id;
  s.span.span_id = new_span_id();
  s.span.parent_span_id = parent_span_id;
  s.span.start_unix_nanos = now_unix_nanos();
  s.span.attributes.reserve(8);
  s.span.attributes.emplace_back("orch.run.id", run_id_);
  return s;
}

void RunTrace::finish(OpenSpan* s, bool failed, const std::string& error) {
  if (!s->open) return;
  s->open = false;
  s->span.end_unix_nanos = now_unix_nanos();
  s->span.error = failed;
  if (failed) s->span.error_message = error;
  if (sampled_) observer_->on_span_end(std::move(s->span));
}

void RunTrace::begin_superstep(int64_t number, size_t nodes) {
  finish(&superstep_, false, "");
  superstep_ = open_span(SpanKind::kSuperstep, "superstep", run_.span.span_id);
  superstep_.span.attributes.emplace_back("orch.superstep", number);
  superstep_.span.attributes.emplace_back("orch.superstep.nodes", static_cast<long long>(nodes));
  nodes_.assign(nodes, OpenSpan());
  steps_.assign(nodes, std::string());
}

void RunTrace::begin_node(size_t index, const std::string& name, const std::string& type, int attempt,
                          const std::string& step_id) {
  if (index >= nodes_.size()) return;
  OpenSpan& s = nodes_[index];
  s = open_span(SpanKind::kNode, "node " + name, superstep_.span.span_id);
  s.span.attributes.emplace_back("orch.node.name", name);
  s.span.attributes.emplace_back("orch.node.type", type);
  s.span.attributes.emplace_back("orch.node.attempt", attempt);
  s.span.attributes.emplace_back("orch.step.id", step_id);
  steps_[index] = step_id;
}

void RunTrace::end_node(size_t index, bool failed, const std::string& error, const Value& usage) {
  if (index >= nodes_.size() || !nodes_[index].open) return;
  Span& span = nodes_[index].span;
  span.attributes.emplace_back("orch.status", failed ? "failed" : "completed");
  add_usage(&span, usage);
  finish(&nodes_[index], failed, error);
}

void RunTrace::retry_node(size_t index, const std::string& error, int attempt, const std::string& step_id) {
  if (index >= nodes_.size() || !nodes_[index].open) return;
  const std::string name = nodes_[index].span.attribute("orch.node.name")->as_string();
  const std::string type = nodes_[index].span.attribute("orch.node.type")->as_string();
  nodes_[index].span.attributes.emplace_back("orch.status", "retrying");
  finish(&nodes_[index], true, error);
  begin_node(index, name, type, attempt, step_id);
}

void RunTrace::end_superstep(const std::string& error) {
  for (OpenSpan& s : nodes_) finish(&s, true, "the superstep ended first");
  finish(&superstep_, !error.empty(), error);
}

void RunTrace::end_run(const RunRecord& run) {
  const bool failed = run.status == RunStatus::kFailed;
  for (OpenSpan& s : nodes_) finish(&s, true, "the run stopped first");
  finish(&superstep_, failed, run.error);
  const std::string status(run_status_name(run.status));
  run_.span.attributes.emplace_back("orch.status", status);
  run_.span.attributes.emplace_back("gen_ai.usage.input_tokens", run.input_tokens);
  run_.span.attributes.emplace_back("gen_ai.usage.output_tokens", run.output_tokens);
  finish(&run_, failed, run.error);
}

std::string RunTrace::node_traceparent(size_t index) const {
  TraceContext ctx;
  ctx.trace_id = run_.span.trace_id;
  ctx.span_id = index < nodes_.size() && nodes_[index].open ? nodes_[index].span.span_id : run_.span.span_id;
  ctx.sampled = sampled_;
  return ctx.traceparent();
}

std::function<void(WorkerReply)> RunTrace::wrap_call(WorkerRequest* request, std::function<void(WorkerReply)> done) {
  // The node whose step id starts the call id ("<step id>#...").
  const std::string step = request->call_id.substr(0, request->call_id.find('#'));
  std::string parent = superstep_.span.span_id;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].open && steps_[i] == step) parent = nodes_[i].span.span_id;
  }
  OpenSpan call = open_span(SpanKind::kWorkerCall, "worker call", parent);
  request->traceparent = TraceContext{call.span.trace_id, call.span.span_id, sampled_}.traceparent();
  if (!sampled_) return done;  // the worker still learns the trace (unsampled)
  call.span.attributes.emplace_back("orch.node.name", request->node_name);
  call.span.attributes.emplace_back("orch.node.attempt", request->attempt);
  call.span.attributes.emplace_back("orch.call.id", request->call_id);
  return [observer = observer_, span = std::move(call.span), done = std::move(done)](WorkerReply reply) mutable {
    span.end_unix_nanos = now_unix_nanos();
    if (!reply.worker_protocol.empty()) span.name = "worker " + reply.worker_protocol;
    span.attributes.emplace_back("orch.worker.id", reply.worker_id);
    span.attributes.emplace_back("orch.worker.protocol", reply.worker_protocol);
    span.attributes.emplace_back("orch.status", reply.status.ok() ? "ok" : "error");
    const Value& envelope = reply.envelope;  // a const view: operator[] inserts nothing
    add_usage(&span, envelope["usage"]);
    if (!reply.status.ok()) {
      span.error = true;
      span.error_message = reply.status.message();
    }
    observer->on_span_end(std::move(span));
    done(std::move(reply));
  };
}

}  // namespace orch::internal
