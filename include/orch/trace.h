// SPDX-License-Identifier: MIT
//
// Tracing: how a host follows runs with its own tracer (OpenTelemetry or
// anything else). Give the engine a TraceObserver (EngineOptions::tracer) and
// it reports a tree of spans per run execution:
//
//   run                 one execution of a run: from its start (or resume,
//   └─ superstep        retry, replay, recovery) until it ends or pauses
//      └─ node          one attempt of one node (a retry is a new span)
//         └─ worker     one call to a worker (HTTP, A2A, MQTT, Redis);
//                       in-process C++ functions have none
//
// A subgraph node's child run is a run span under that node's span. Span and
// trace ids follow W3C Trace Context; a run started with
// RunOptions::traceparent continues the caller's trace, and every worker
// call carries its span's traceparent (WorkerRequest::traceparent), so a
// worker's own spans join the tree.
//
// Cost: with no observer the engine does no tracing work at all (one
// null-pointer test at each point above). With one, each span costs a few
// small allocations and one on_span_end() call.
//
// Thread-safety: the engine calls an observer from many threads at once,
// sometimes while holding a run's lock: should_sample() and on_span_end()
// must be thread-safe, must not block (queue the span and return) and must
// not call back into the Engine. The observer is shared with the host, which
// keeps it alive as long as the engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orch/export.h"
#include "orch/value.h"

namespace orch {

// A W3C trace context: which trace, which span in it, whether it is sampled.
struct TraceContext {
  std::string trace_id;  // 32 lowercase hex digits, not all zero
  std::string span_id;   // 16 lowercase hex digits, not all zero
  bool sampled = false;

  // "00-<trace_id>-<span_id>-<01|00>".
  ORCH_EXPORT std::string traceparent() const;
  // Parses a `traceparent` header value (W3C Trace Context, version 00, and
  // later versions as that version says: their first four fields). Anything
  // malformed -- wrong length, upper case, non-hex, all-zero ids, version ff
  // -- is nullopt: a bad header starts a new trace, it never fails a call.
  ORCH_EXPORT static std::optional<TraceContext> from_traceparent(std::string_view header);
};

// New random ids (never all zero).
ORCH_EXPORT std::string new_trace_id();
ORCH_EXPORT std::string new_span_id();

enum class SpanKind { kRun, kSuperstep, kNode, kWorkerCall };
ORCH_EXPORT const char* span_kind_name(SpanKind kind);  // "run", "superstep", "node", "worker_call"

// A finished span.
struct Span {
  SpanKind kind = SpanKind::kRun;
  std::string name;            // "run", "superstep", "node <name>", "worker <protocol>"
  std::string trace_id;
  std::string span_id;
  std::string parent_span_id;  // empty for a root span
  bool parent_is_remote = false;  // the parent came from a traceparent header
  int64_t start_unix_nanos = 0;   // wall clock (the engine's Clock is not used: spans are for people)
  int64_t end_unix_nanos = 0;
  bool error = false;
  std::string error_message;   // set when `error`
  // Attributes, in the OpenTelemetry style: "orch.run.id", "orch.workflow.id",
  // "orch.node.name", "orch.node.type", "orch.node.attempt", "orch.worker.id",
  // "orch.worker.protocol", "orch.status", "gen_ai.usage.input_tokens",
  // "gen_ai.usage.output_tokens", ... Keys are string literals (static
  // storage: no allocation per span); values are strings, integers, doubles
  // or booleans.
  std::vector<std::pair<std::string_view, Value>> attributes;

  // The attribute named `key`, or null.
  ORCH_EXPORT const Value* attribute(std::string_view key) const;
};

class ORCH_EXPORT TraceObserver {
 public:
  virtual ~TraceObserver() = default;
  // Whether to trace a run execution about to start in trace `trace_id`.
  // `parent` is the caller's context (RunOptions::traceparent, or the parent
  // run's node span for a subgraph child), null for a new trace. When this
  // returns false nothing of that run execution is reported and its workers
  // receive an unsampled traceparent. Default: follow a parent, else sample.
  virtual bool should_sample(const std::string& trace_id, const TraceContext* parent) {
    (void)trace_id;
    return parent == nullptr || parent->sampled;
  }
  // A span ended; it is the observer's to keep (move it into a queue).
  // Children end before their parents, except a worker call abandoned at its
  // deadline, which ends when its worker answers.
  virtual void on_span_end(Span span) = 0;
};

}  // namespace orch
