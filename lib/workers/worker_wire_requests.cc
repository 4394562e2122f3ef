// SPDX-License-Identifier: MIT
// Request URLs and bodies of the built-in HTTP worker protocols (NullBoiler
// engine reference §7.4-7.8; A2A v0.3 message/send).
#include "orch/id.h"
#include "workers/worker_wire.h"

#include "orch/url.h"

namespace orch::internal {
namespace {

std::string trim_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string session_key(const WorkerRequest& request) {
  if (!request.session_id.empty()) return request.session_id;
  std::string step = request.step_id.empty() ? std::string(step_of_call_id(request.call_id)) : request.step_id;
  return "run_" + request.run_id + "_step_" + step;
}

Result<std::string> call_url(WireProtocol protocol, const WorkerInfo& worker) {
  std::string url = trim_trailing_slashes(worker.url);
  ORCH_ASSIGN_OR_RETURN(Url parts, parse_http_url(url));
  switch (protocol) {
    case WireProtocol::kWebhook:
      if (parts.target == "/" || parts.target.empty()) {
        return Status::invalid_argument("webhook worker url must include explicit path (for example /webhook)");
      }
      return url;
    case WireProtocol::kA2a:
      return ends_with(url, "/a2a") ? url : url + "/a2a";
    case WireProtocol::kApiChat:
    case WireProtocol::kOpenAiChat:
      return url;
  }
  return url;
}

Status validate_worker(WireProtocol protocol, const WorkerInfo& worker) {
  if (protocol == WireProtocol::kOpenAiChat && worker.model.empty()) {
    return Status::invalid_argument("worker protocol openai_chat requires worker.model");
  }
  Result<std::string> url = call_url(protocol, worker);
  return url.ok() ? Status() : url.status();
}

Result<std::string> request_body(WireProtocol protocol, const WorkerInfo& worker, const WorkerRequest& request,
                                 const std::string& message_id, const std::string& task_id) {
  const std::string key = session_key(request);
  const std::string& prompt = request.prompt;
  Value body;
  switch (protocol) {
    case WireProtocol::kWebhook:
      body = Value::object({{"message", prompt}, {"text", prompt}, {"session_key", key}, {"session_id", key}});
      break;
    case WireProtocol::kApiChat:
      body = Value::object({{"message", prompt}, {"session_id", key}});
      break;
    case WireProtocol::kOpenAiChat:
      if (worker.model.empty()) {
        return Status::invalid_argument("worker protocol openai_chat requires worker.model");
      }
      body = Value::object({{"model", worker.model},
                            {"stream", false},
                            {"messages", Value::array({Value::object({{"role", "user"}, {"content", prompt}})})}});
      break;
    case WireProtocol::kA2a: {
      Value message = Value::object({{"kind", "message"},
                                     {"role", "user"},
                                     {"parts", Value::array({Value::object({{"kind", "text"}, {"text", prompt}})})},
                                     {"messageId", message_id.empty() ? new_uuid() : message_id},
                                     {"contextId", key}});
      if (!task_id.empty()) message.set("taskId", task_id);
      body = Value::object(
          {{"jsonrpc", "2.0"},
           {"id", key},
           {"method", "message/send"},
           {"params", Value::object({{"message", std::move(message)},
                                     {"configuration",
                                      Value::object({{"acceptedOutputModes",
                                                      Value::array({"text/plain", "application/json"})},
                                                     {"blocking", true}})}})}});
      break;
    }
  }
  return body.to_json();
}

}  // namespace orch::internal
