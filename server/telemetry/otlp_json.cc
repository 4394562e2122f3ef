// SPDX-License-Identifier: MIT
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

Value any_value(const Value& v) {
  if (v.is_bool()) return Value::object({{"boolValue", v.as_bool()}});
  if (v.is_int()) return Value::object({{"intValue", std::to_string(v.as_int())}});
  if (v.is_double()) return Value::object({{"doubleValue", v.as_double()}});
  if (v.is_string()) return Value::object({{"stringValue", v.as_string()}});
  return Value::object({{"stringValue", v.to_json()}});
}

Value key_value(const std::string& key, const Value& v) { return Value::object({{"key", key}, {"value", any_value(v)}}); }

Value span_json(const Span& s) {
  int kind = kKindInternal;
  if (s.kind == SpanKind::kWorkerCall) kind = kKindClient;
  if (s.kind == SpanKind::kRun && s.parent_is_remote) kind = kKindServer;
  Value attributes = Value::array();
  attributes.push_back(key_value("orch.span.kind", span_kind_name(s.kind)));
  for (const auto& [k, v] : s.attributes) attributes.push_back(key_value(k, v));
  Value o = Value::object({{"traceId", s.trace_id}, {"spanId", s.span_id}});
  if (!s.parent_span_id.empty()) o.set("parentSpanId", s.parent_span_id);
  o.set("name", s.name);
  o.set("kind", kind);
  o.set("startTimeUnixNano", std::to_string(s.start_unix_nanos));
  o.set("endTimeUnixNano", std::to_string(s.end_unix_nanos));
  o.set("attributes", std::move(attributes));
  Value status = Value::object({{"code", s.error ? kStatusError : kStatusOk}});
  if (s.error) status.set("message", s.error_message);
  o.set("status", std::move(status));
  return o;
}

}  // namespace

std::string otlp_export_request(const OtlpResource& resource, const std::vector<Span>& spans) {
  Value attributes = Value::array();
  attributes.push_back(key_value("service.name", resource.service_name));
  attributes.push_back(key_value("service.version", std::string(orch::version())));
  for (const auto& [k, v] : resource.attributes) attributes.push_back(key_value(k, v));
  Value list = Value::array();
  for (const Span& s : spans) list.push_back(span_json(s));
  Value scope = Value::object({{"scope", Value::object({{"name", "orch"}, {"version", std::string(orch::version())}})},
                               {"spans", std::move(list)}});
  Value resource_spans = Value::object({{"resource", Value::object({{"attributes", std::move(attributes)}})},
                                        {"scopeSpans", Value::array({std::move(scope)})}});
  return Value::object({{"resourceSpans", Value::array({std::move(resource_spans)})}}).to_json();
}

}  // namespace orch::server
