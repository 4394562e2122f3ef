// SPDX-License-Identifier: MIT
//
// Metrics: process counters and latency histograms, written in Prometheus
// text format (HELP and TYPE lines). Thread-safe; updating is lock-free.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace orch::server {

class Histogram {
 public:
  // Upper bounds in seconds.
  static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0,   5.0};
  void observe(double seconds);
  void write(std::string* out, const char* name, const char* help) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size()> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

// What the OTLP trace exporter did (telemetry/otlp_exporter.h). Shared with
// it: the engine may hold the exporter a little longer than the server.
struct TraceExportCounters {
  std::atomic<uint64_t> spans_exported{0};
  std::atomic<uint64_t> spans_dropped{0};   // queue full, export failed, or ended after shutdown
  std::atomic<uint64_t> exports_failed{0};
};

struct Metrics {
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> http_errors{0};
  std::atomic<uint64_t> runs_created{0};
  std::atomic<uint64_t> runs_idempotent_replays{0};
  std::atomic<uint64_t> runs_completed{0};
  std::atomic<uint64_t> runs_failed{0};
  std::atomic<uint64_t> runs_cancelled{0};
  std::atomic<uint64_t> steps_completed{0};
  std::atomic<uint64_t> steps_failed{0};
  std::atomic<uint64_t> steps_retried{0};
  std::atomic<uint64_t> steps_claimed{0};  // worker calls started (attempts)
  std::atomic<uint64_t> worker_health_checks{0};
  std::atomic<uint64_t> worker_health_failures{0};
  std::atomic<uint64_t> callbacks_sent{0};
  std::atomic<uint64_t> callbacks_failed{0};
  Histogram http_latency;
  Histogram step_latency;
  std::shared_ptr<TraceExportCounters> tracing = std::make_shared<TraceExportCounters>();

  // Prometheus text; `active_runs` and `sse_clients` are gauges read by the
  // caller. After orch's own, NullBoiler's eleven counters under its names
  // (reference/nullboiler-api.md §10), so its dashboards keep working.
  std::string render(size_t active_runs, size_t sse_clients) const;
};

}  // namespace orch::server
