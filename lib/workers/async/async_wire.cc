// SPDX-License-Identifier: MIT
// Broker URLs, request payloads and reply parsing of the mqtt and
// redis_stream protocols.
#include "workers/async/async_wire.h"

#include <algorithm>
#include <cctype>

#include "orch/url.h"
#include "workers/worker_wire.h"

namespace orch::internal {

Result<BrokerTarget> parse_broker_url(std::string_view url, std::string_view scheme, int default_port) {
  const std::string what = "invalid " + std::string(scheme) + ":// URL";
  const std::string prefix = std::string(scheme) + "://";
  if (url.substr(0, prefix.size()) != prefix) {
    return Status::invalid_argument(what + ": " + std::string(url) + " (expected " + prefix + "host:port/name)");
  }
  Result<Url> parsed = parse_url(url);
  if (!parsed.ok()) return Status::invalid_argument(what + ": " + parsed.status().message());
  // '#' and '+' are MQTT wildcards: a request topic must name one topic.
  if (parsed->has_fragment || parsed->target.find('+') != std::string::npos) {
    return Status::invalid_argument(what + ": wildcards are not allowed in " + std::string(url));
  }
  if (parsed->target.size() < 2) {
    return Status::invalid_argument(what + ": " + std::string(url) + " names no topic or stream");
  }
  BrokerTarget target;
  target.host = parsed->host;
  // Without a port in the URL, parse_url gives the scheme's standard one; the
  // protocol's own default applies instead.
  const std::string_view rest = url.substr(prefix.size());
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  const size_t colon = authority.rfind(':');
  const size_t bracket = authority.rfind(']');
  const bool has_port = colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket);
  target.port = has_port ? parsed->port : default_port;
  target.name = parsed->target.substr(1);
  return target;
}

Result<BrokerCall> begin_broker_call(const WorkerInfo& worker, const WorkerRequest& request,
                                     std::string_view scheme, int default_port, std::string_view protocol,
                                     SteadyTime now, int64_t default_timeout_ms) {
  ORCH_ASSIGN_OR_RETURN(BrokerTarget target, parse_broker_url(worker.url, scheme, default_port));
  if (request.call_id.empty()) {
    return Status::invalid_argument(std::string(protocol) + ": the request has no call id");
  }
  BrokerCall call;
  call.target = std::move(target);
  call.deadline = request.deadline == SteadyTime() ? now + std::chrono::milliseconds(default_timeout_ms)
                                                   : request.deadline;
  call.wait_ms = std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(call.deadline - now).count());
  return call;
}

std::string describe_wait(int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  const int64_t tenths = (ms + 50) / 100;
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " s";
}

Status check_instance_name(std::string_view instance) {
  if (instance.empty() || instance.size() > 64) {
    return Status::invalid_argument("instance name must have 1 to 64 characters");
  }
  for (char c : instance) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return Status::invalid_argument("instance name may hold only letters, digits, '_', '-' and '.': " +
                                      std::string(instance));
    }
  }
  return Status();
}

std::string async_request_payload(const WorkerInfo& worker, const WorkerRequest& request,
                                  const std::string& reply_to, int64_t now_ms, int64_t deadline_ms) {
  Value body = Value::object({{"correlation_id", request.call_id},
                              {"reply_to", reply_to},
                              {"timestamp_ms", static_cast<long long>(now_ms)},
                              {"message", request.prompt},
                              {"session_key", session_key(request)}});
  if (!worker.token.empty()) body.set("token", worker.token);
  body.set("run_id", request.run_id);
  body.set("node", request.node_name);
  body.set("node_type", request.node_type);
  body.set("attempt", request.attempt);
  body.set("turn", request.turn);
  body.set("worker_id", worker.id);
  body.set("deadline_ms", static_cast<long long>(deadline_ms));
  if (!request.item.is_null()) body.set("item", request.item);
  if (!request.traceparent.empty()) body.set("traceparent", request.traceparent);
  return body.to_json();
}

Result<AsyncReply> parse_async_reply(std::string_view payload, std::string correlation) {
  Result<Value> parsed = parse_json(payload);
  const bool object = parsed.ok() && parsed->is_object();
  if (correlation.empty() && object && (*parsed)["correlation_id"].is_string()) {
    correlation = (*parsed)["correlation_id"].as_string();
  }
  if (correlation.empty()) return Status::invalid_argument("reply names no correlation_id");
  AsyncReply out;
  out.correlation_id = std::move(correlation);
  out.reply = parse_chat_reply(payload);
  if (!out.reply.status.ok() && object && (*parsed)["retryable"].is_bool()) {
    out.reply.retryable = (*parsed)["retryable"].as_bool();
  }
  return out;
}

}  // namespace orch::internal
