// SPDX-License-Identifier: MIT
//
// TracingConfig: where and how `orch serve` exports its spans (OTLP/HTTP with
// JSON encoding), from the config file's "tracing" section and the standard
// OpenTelemetry environment variables, read as OpenTelemetry SDKs read them:
//
//   OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none   no tracing
//   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT                  the traces URL, as is
//   OTEL_EXPORTER_OTLP_ENDPOINT                         a base URL: + "/v1/traces"
//   OTEL_EXPORTER_OTLP_[TRACES_]HEADERS                 "k1=v1,k2=v2" (percent-decoded)
//   OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT                 ms per export
//   OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL                only http/json is spoken
//   OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES         the resource
//   OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG        always_on, always_off,
//       traceidratio, parentbased_always_on (default), parentbased_always_off,
//       parentbased_traceidratio; the ratio in [0, 1]
//   OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
//   OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT    the batching
//
// A key in the config file wins over its variable (the file is the
// operator's explicit choice). Tracing is on when an endpoint is known.
// Every bad value is a problem naming its source: start-up stops
// (`orch serve --check-config` lists them all).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "orch/value.h"

namespace orch::server {

struct TracingConfig {
  bool enabled = false;
  std::string endpoint;  // http(s) URL of the collector's traces endpoint
  std::vector<std::pair<std::string, std::string>> headers;  // sent with every export
  std::string service_name = "orch";
  std::vector<std::pair<std::string, std::string>> resource_attributes;
  std::string sampler = "parentbased_always_on";
  double sampler_ratio = 1.0;    // for the *traceidratio samplers
  size_t max_queue_spans = 2048;  // spans waiting for export; more are dropped (and counted)
  size_t max_batch_spans = 512;   // spans per export request
  int64_t export_interval_ms = 1000;
  int64_t export_timeout_ms = 10000;
};

// Limits on what the config and the environment may ask for.
inline constexpr size_t kMaxTraceQueueSpans = 1000000;
inline constexpr size_t kMaxTraceHeaders = 64;
inline constexpr size_t kMaxTraceHeaderBytes = 8192;

// The value of an environment variable, or null (tests pass their own).
using EnvLookup = std::function<const char*(const char* name)>;
EnvLookup process_env();

// Reads `section` (the config file's "tracing" value; null when absent) and
// the environment. Each problem is appended to `problems` ("tracing.sampler:
// ..." or "OTEL_TRACES_SAMPLER: ...").
TracingConfig resolve_tracing_config(const Value& section, const EnvLookup& env, std::vector<std::string>* problems);

}  // namespace orch::server
