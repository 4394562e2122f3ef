// SPDX-License-Identifier: MIT
#include "telemetry/otlp_exporter.h"

#include <httplib.h>

#include <chrono>
#include <cmath>

#include "log/log.h"
#include "orch/url.h"

namespace orch::server {
namespace {

uint64_t low_64_bits(const std::string& trace_id) {
  // Ids are 32 lowercase hex digits (the engine makes or checks them).
  return trace_id.size() == 32 ? std::stoull(trace_id.substr(16), nullptr, 16) : 0;
}

}  // namespace

OtlpExporter::OtlpExporter(const TracingConfig& config, std::shared_ptr<TraceExportCounters> counters)
    : config_(config), counters_(std::move(counters)), resource_{config.service_name, config.resource_attributes} {
  // ratio * 2^64, saturating (1.0 samples every id).
  const long double bound = static_cast<long double>(config.sampler_ratio) * 18446744073709551616.0L;
  ratio_bound_ = bound >= 18446744073709551615.0L ? UINT64_MAX : static_cast<uint64_t>(bound);
}

Result<std::shared_ptr<OtlpExporter>> OtlpExporter::start(const TracingConfig& config,
                                                          std::shared_ptr<TraceExportCounters> counters) {
  ORCH_RETURN_IF_ERROR(parse_http_url(config.endpoint).status());
  std::shared_ptr<OtlpExporter> exporter(new OtlpExporter(config, std::move(counters)));
  exporter->thread_ = std::thread([raw = exporter.get()] { raw->run(); });
  return exporter;
}

OtlpExporter::~OtlpExporter() { stop(); }

bool OtlpExporter::should_sample(const std::string& trace_id, const TraceContext* parent) {
  const std::string& s = config_.sampler;
  const bool parent_based = s.rfind("parentbased_", 0) == 0;
  if (parent_based && parent != nullptr) return parent->sampled;
  if (s == "always_off" || s == "parentbased_always_off") return false;
  if (s == "traceidratio" || s == "parentbased_traceidratio") {
    return ratio_bound_ == UINT64_MAX || low_64_bits(trace_id) < ratio_bound_;
  }
  return true;
}

void OtlpExporter::on_span_end(Span span) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || queue_.size() >= config_.max_queue_spans) {
    counters_->spans_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queue_.push_back(std::move(span));
  if (queue_.size() == config_.max_batch_spans) wake_.notify_one();
}

void OtlpExporter::run() {
  // One connection, kept alive between exports (a collector that closes it
  // gets a new one on the next export).
  Result<Url> url = parse_http_url(config_.endpoint);  // checked in start()
  httplib::Client client(url->origin());
  const auto timeout = std::chrono::milliseconds(config_.export_timeout_ms);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  client.set_keep_alive(true);
  const auto interval = std::chrono::milliseconds(config_.export_interval_ms);
  auto next_flush = std::chrono::steady_clock::now() + interval;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait_until(lock, next_flush, [this] { return stopping_ || queue_.size() >= config_.max_batch_spans; });
    const bool last = stopping_;
    const bool due = last || std::chrono::steady_clock::now() >= next_flush;
    // Full batches go out at once; a partial one waits for the interval (or
    // shutdown), so a busy server sends few large requests, not many small
    // ones. When stopping: one export at most, so shutdown is bounded.
    while (queue_.size() >= config_.max_batch_spans || (due && !queue_.empty())) {
      const size_t n = std::min(queue_.size(), config_.max_batch_spans);
      std::vector<Span> batch(std::make_move_iterator(queue_.begin()),
                              std::make_move_iterator(queue_.begin() + static_cast<long>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<long>(n));
      exporting_ = true;
      in_flight_ = &client;
      lock.unlock();
      export_batch(client, url->target, std::move(batch));
      lock.lock();
      in_flight_ = nullptr;
      exporting_ = false;
      if (last || stopping_ || n < config_.max_batch_spans) break;
    }
    if (due) next_flush = std::chrono::steady_clock::now() + interval;
    if (last || stopping_) {
      counters_->spans_dropped.fetch_add(queue_.size(), std::memory_order_relaxed);
      queue_.clear();
      return;
    }
  }
}

bool OtlpExporter::export_batch(httplib::Client& client, const std::string& target, std::vector<Span> batch) {
  const size_t n = batch.size();
  const std::string body = otlp_export_request(resource_, batch);
  batch.clear();
  httplib::Headers headers;
  for (const auto& [name, value] : config_.headers) headers.emplace(name, value);
  httplib::Result result = client.Post(target, headers, body, "application/json");
  const bool ok = result && result->status >= 200 && result->status < 300;
  if (ok) {
    counters_->spans_exported.fetch_add(n, std::memory_order_relaxed);
    return true;
  }
  counters_->exports_failed.fetch_add(1, std::memory_order_relaxed);
  counters_->spans_dropped.fetch_add(n, std::memory_order_relaxed);
  // The endpoint's origin only: its path or headers may carry credentials.
  log(LogLevel::kWarn, "tracing.export_failed",
      {{"collector", parse_http_url(config_.endpoint)->origin()},
       {"spans", static_cast<long long>(n)},
       {"status", result ? Value(result->status) : Value()},
       {"error", result ? Value() : Value(httplib::to_string(result.error()))}});
  return false;
}

void OtlpExporter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (!thread_.joinable()) return;
  // The last export has export_timeout_ms; past that (a collector trickling
  // its answer) the connection is cut.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.export_timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!exporting_ && queue_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (in_flight_ != nullptr) in_flight_->stop();
  }
  thread_.join();
}

}  // namespace orch::server
