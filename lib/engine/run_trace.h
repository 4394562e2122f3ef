// SPDX-License-Identifier: MIT
//
// RunTrace: the open spans of one run execution (RunContext::trace), which
// the engine opens and closes as the run goes (orch/trace.h). It exists only
// while the engine has a TraceObserver, so an engine without one pays a null
// test per hook. All methods are called with the run's mutex held, except the
// callback wrap_call() returns, which runs on the dispatcher's thread and
// touches only its own copy of the call's span.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orch/store.h"
#include "orch/trace.h"
#include "orch/dispatcher.h"

namespace orch::internal {

class RunTrace {
 public:
  // Opens the run span of `run`, in the trace of `parent_traceparent` when
  // that parses (else a new trace), sampled as `observer` decides.
  RunTrace(std::shared_ptr<TraceObserver> observer, const RunRecord& run, const std::string& parent_traceparent);

  // A superstep starts with `nodes` nodes (tasks); node spans are then opened
  // one by one with begin_node.
  void begin_superstep(int64_t number, size_t nodes);
  void begin_node(size_t index, const std::string& name, const std::string& type, int attempt,
                  const std::string& step_id);
  // Ends node `index`'s span. `usage` is the node's token usage ({input_tokens, output_tokens}) or null.
  void end_node(size_t index, bool failed, const std::string& error, const Value& usage);
  // The node's attempt failed and another follows (as `attempt`, `step_id`).
  void retry_node(size_t index, const std::string& error, int attempt, const std::string& step_id);
  void end_superstep(const std::string& error);
  // Ends whatever is open, then the run span with the run's final (or
  // paused) status and token totals.
  void end_run(const RunRecord& run);

  // The traceparent of node `index`'s span (what a subgraph child continues).
  std::string node_traceparent(size_t index) const;
  // Gives `request` the traceparent of a new worker-call span under the node
  // whose step id starts its call id, and returns `done` wrapped so the span
  // ends (with the reply's worker, protocol, status and usage) when it is called.
  std::function<void(WorkerReply)> wrap_call(WorkerRequest* request, std::function<void(WorkerReply)> done);

 private:
  struct OpenSpan {
    bool open = false;
    Span span;
  };
  OpenSpan open_span(SpanKind kind, std::string name, const std::string& parent_span_id);
  void finish(OpenSpan* s, bool failed, const std::string& error);

  std::shared_ptr<TraceObserver> observer_;
  bool sampled_ = false;
  Value run_id_;  // shared by every span's attribute
  OpenSpan run_;
  OpenSpan superstep_;
  std::vector<OpenSpan> nodes_;      // by task index
  std::vector<std::string> steps_;   // step id of each node span, by task index
};

}  // namespace orch::internal
