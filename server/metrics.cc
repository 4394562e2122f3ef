// SPDX-License-Identifier: MIT
#include "metrics.h"

#include "orch/thread_guard.h"

#include <fmt/format.h>

namespace orch::server {

void Histogram::observe(double seconds) {
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::write(std::string* out, const char* name, const char* help) const {
  fmt::format_to(std::back_inserter(*out), "# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    fmt::format_to(std::back_inserter(*out), "{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], cumulative);
  }
  uint64_t count = count_.load(std::memory_order_relaxed);
  fmt::format_to(std::back_inserter(*out), "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count, name,
                 static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6, name, count);
}

std::string Metrics::render(size_t active_runs, size_t sse) const {
  std::string out;
  auto counter = [&out](const char* name, const char* help, const std::atomic<uint64_t>& v) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name,
                   v.load(std::memory_order_relaxed));
  };
  auto gauge = [&out](const char* name, const char* help, size_t v) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  counter("orch_http_requests_total", "HTTP requests received.", http_requests);
  counter("orch_http_errors_total", "HTTP requests answered with a 4xx or 5xx status.", http_errors);
  counter("orch_runs_created_total", "Runs created through the API.", runs_created);
  counter("orch_runs_idempotent_replays_total", "Run creations answered from an idempotency key.", runs_idempotent_replays);
  counter("orch_runs_completed_total", "Runs that completed.", runs_completed);
  counter("orch_runs_failed_total", "Runs that failed.", runs_failed);
  counter("orch_runs_cancelled_total", "Runs that were cancelled.", runs_cancelled);
  counter("orch_steps_completed_total", "Worker calls that succeeded.", steps_completed);
  counter("orch_steps_failed_total", "Worker calls that failed.", steps_failed);
  counter("orch_steps_retry_scheduled_total", "Retries scheduled after a failed attempt.", steps_retried);
  counter("orch_callbacks_sent_total", "Run callbacks delivered.", callbacks_sent);
  counter("orch_callbacks_failed_total", "Run callbacks that could not be delivered.", callbacks_failed);
  counter("orch_background_exceptions_total", "Exceptions caught in background threads (each logged on stderr).",
          thread_exceptions());
  counter("orch_trace_spans_exported_total", "Trace spans the OTLP collector accepted.", tracing->spans_exported);
  counter("orch_trace_spans_dropped_total",
          "Trace spans dropped: the export queue was full, or their export failed.", tracing->spans_dropped);
  counter("orch_trace_exports_failed_total", "OTLP export requests that failed (error, timeout, refused).",
          tracing->exports_failed);
  gauge("orch_runs_active", "Runs currently executing.", active_runs);
  gauge("orch_sse_clients", "Open SSE streams.", sse);
  counter("orch_steps_started_total", "Worker call attempts started.", steps_claimed);
  counter("orch_worker_health_checks_total", "Worker health probes made.", worker_health_checks);
  counter("orch_worker_health_failures_total", "Worker health probes that failed.", worker_health_failures);
  http_latency.write(&out, "orch_http_request_duration_seconds", "Time to answer an HTTP request.");
  step_latency.write(&out, "orch_step_duration_seconds", "Time from a step's start to its result.");
  // NullBoiler's names, in its order, for its users' dashboards and alerts.
  counter("nullboiler_http_requests_total", "NullBoiler's name for orch_http_requests_total.", http_requests);
  counter("nullboiler_runs_created_total", "NullBoiler's name for orch_runs_created_total.", runs_created);
  counter("nullboiler_runs_idempotent_replays_total", "NullBoiler's name for orch_runs_idempotent_replays_total.",
          runs_idempotent_replays);
  counter("nullboiler_steps_claimed_total", "NullBoiler's name for orch_steps_started_total.", steps_claimed);
  counter("nullboiler_steps_retry_scheduled_total", "NullBoiler's name for orch_steps_retry_scheduled_total.",
          steps_retried);
  counter("nullboiler_worker_dispatch_success_total", "NullBoiler's name for orch_steps_completed_total.",
          steps_completed);
  counter("nullboiler_worker_dispatch_failure_total", "NullBoiler's name for orch_steps_failed_total.", steps_failed);
  counter("nullboiler_worker_health_checks_total", "NullBoiler's name for orch_worker_health_checks_total.",
          worker_health_checks);
  counter("nullboiler_worker_health_failures_total", "NullBoiler's name for orch_worker_health_failures_total.",
          worker_health_failures);
  counter("nullboiler_callback_sent_total", "NullBoiler's name for orch_callbacks_sent_total.", callbacks_sent);
  counter("nullboiler_callback_failed_total", "NullBoiler's name for orch_callbacks_failed_total.", callbacks_failed);
  return out;
}

}  // namespace orch::server
