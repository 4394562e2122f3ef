// SPDX-License-Identifier: MIT
//
// Written straight into one string (not built as a Value first): an export
// of 512 spans is the exporter thread's main cost.
#include "telemetry/otlp_json.h"

#include "orch/version.h"

namespace orch::server {
namespace {

// OTLP span kinds: a run continuing a caller's trace serves that caller; a
// worker call is a client; the rest is internal work.
constexpr int kKindInternal = 1;
constexpr int kKindServer = 2;
constexpr int kKindClient = 3;
constexpr int kStatusOk = 1;
constexpr int kStatusError = 2;

void append_string(std::string* out, std::string_view s) { Value(s).write_json(out); }

// {"key":K,"value":{"stringValue"|"intValue"|"doubleValue"|"boolValue":V}};
// 64-bit integers are strings in the protobuf JSON mapping.
void append_key_value(std::string* out, std::string_view key, const Value& v) {
  out->append("{\"key\":");
  append_string(out, key);
  if (v.is_bool()) {
    out->append(",\"value\":{\"boolValue\":");
    out->append(v.as_bool() ? "true" : "false");
  } else if (v.is_int()) {
    out->append(",\"value\":{\"intValue\":\"");
    out->append(std::to_string(v.as_int()));
    out->push_back('"');
  } else if (v.is_double()) {
    out->append(",\"value\":{\"doubleValue\":");
    v.write_json(out);
  } else {
    out->append(",\"value\":{\"stringValue\":");
    if (v.is_string()) v.write_json(out);
    else append_string(out, v.to_json());
  }
  out->append("}}");
}

void append_span(std::string* out, const Span& s) {
  int kind = kKindInternal;
  if (s.kind == SpanKind::kWorkerCall) kind = kKindClient;
  if (s.kind == SpanKind::kRun && s.parent_is_remote) kind = kKindServer;
  // Ids are lowercase hex (the engine makes or checks them): no escaping needed.
  out->append("{\"traceId\":\"").append(s.trace_id).append("\",\"spanId\":\"").append(s.span_id).push_back('"');
  if (!s.parent_span_id.empty()) out->append(",\"parentSpanId\":\"").append(s.parent_span_id).push_back('"');
  out->append(",\"name\":");
  append_string(out, s.name);
  out->append(",\"kind\":").append(std::to_string(kind));
  out->append(",\"startTimeUnixNano\":\"").append(std::to_string(s.start_unix_nanos));
  out->append("\",\"endTimeUnixNano\":\"").append(std::to_string(s.end_unix_nanos));
  out->append("\",\"attributes\":[");
  append_key_value(out, "orch.span.kind", span_kind_name(s.kind));
  for (const auto& [k, v] : s.attributes) {
    out->push_back(',');
    append_key_value(out, k, v);
  }
  out->append("],\"status\":{\"code\":").append(std::to_string(s.error ? kStatusError : kStatusOk));
  if (s.error) {
    out->append(",\"message\":");
    append_string(out, s.error_message);
  }
  out->append("}}");
}

}  // namespace

std::string otlp_export_request(const OtlpResource& resource, const std::vector<Span>& spans) {
  std::string out;
  out.reserve(1024 + spans.size() * 700);
  out.append("{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
  append_key_value(&out, "service.name", resource.service_name);
  out.push_back(',');
  append_key_value(&out, "service.version", std::string(orch::version()));
  for (const auto& [k, v] : resource.attributes) {
    out.push_back(',');
    append_key_value(&out, k, v);
  }
  out.append("]},\"scopeSpans\":[{\"scope\":{\"name\":\"orch\",\"version\":");
  append_string(&out, orch::version());
  out.append("},\"spans\":[");
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i > 0) out.push_back(',');
    append_span(&out, spans[i]);
  }
  out.append("]}]}]}");
  return out;
}

}  // namespace orch::server
