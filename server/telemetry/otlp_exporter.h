// SPDX-License-Identifier: MIT
//
// OtlpExporter: the server's TraceObserver. Spans go into a bounded queue
// (on_span_end never blocks and never waits for the network: a full queue
// drops the span and counts it); a background thread sends them in batches
// to the collector as OTLP/HTTP JSON, every export_interval_ms or as soon as a
// batch is full. A collector that fails, hangs or is unreachable costs
// exports, counted in /metrics (orch_trace_spans_dropped_total,
// orch_trace_exports_failed_total), never a run's progress: each export
// waits at most export_timeout_ms.
//
// Sampling follows TracingConfig::sampler (parent-based by default).
//
// Thread-safety: should_sample and on_span_end may be called from any thread;
// stop() from one thread (the destructor calls it).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "metrics.h"
#include "orch/status.h"
#include "orch/trace.h"
#include "telemetry/otlp_json.h"
#include "telemetry/trace_config.h"

namespace httplib {
class Client;
}

namespace orch::server {

class OtlpExporter final : public TraceObserver {
 public:
  // Starts the export thread; it counts into `counters` (the server's /metrics).
  static Result<std::shared_ptr<OtlpExporter>> start(const TracingConfig& config,
                                                     std::shared_ptr<TraceExportCounters> counters);
  ~OtlpExporter() override;

  bool should_sample(const std::string& trace_id, const TraceContext* parent) override;
  void on_span_end(Span span) override;

  // Sends what is queued (one last export, bounded by export_timeout_ms) and
  // stops the thread. Spans ending later are dropped.
  void stop();

 private:
  OtlpExporter(const TracingConfig& config, std::shared_ptr<TraceExportCounters> counters);
  void run();
  bool export_batch(httplib::Client& client, const std::string& target, std::vector<Span> batch);

  const TracingConfig config_;
  std::shared_ptr<TraceExportCounters> counters_;
  OtlpResource resource_;
  uint64_t ratio_bound_ = 0;  // trace ids whose low 64 bits are below it are sampled

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Span> queue_;        // guarded by mu_
  bool stopping_ = false;         // guarded by mu_
  bool exporting_ = false;        // guarded by mu_: a batch is on its way
  httplib::Client* in_flight_ = nullptr;  // guarded by mu_: stop() cuts a hanging export
  std::thread thread_;
};

}  // namespace orch::server
