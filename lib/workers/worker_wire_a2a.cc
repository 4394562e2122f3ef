// SPDX-License-Identifier: MIT
// A2A JSON-RPC responses: v0.3 results (a Task or a Message, with `kind`) and
// v1.0 results ({"task": ...} or {"message": ...}, ProtoJSON parts and
// TASK_STATE_* names). NullBoiler engine reference §7.8, protocols.md §3a.
#include <algorithm>
#include <cctype>

#include "workers/worker_wire.h"

namespace orch::internal {
namespace {

WorkerReply failure(Status status, bool retryable) {
  WorkerReply reply;
  reply.status = std::move(status);
  reply.retryable = retryable;
  return reply;
}

// The text of a part list: text parts as they are, data parts as JSON;
// concatenated.
std::string parts_text(const Value& parts) {
  std::string out;
  if (!parts.is_array()) return out;
  for (const Value& part : parts.as_array()) {
    if (part["text"].is_string()) {
      out += part["text"].as_string();
    } else if (const Value* data = part.find("data"); data && !data->is_null()) {
      out += data->to_json();
    }
  }
  return out;
}

// Artifacts' text, one artifact per line.
std::string artifacts_text(const Value& artifacts) {
  std::string out;
  if (!artifacts.is_array()) return out;
  for (const Value& artifact : artifacts.as_array()) {
    std::string text = parts_text(artifact["parts"]);
    if (text.empty()) continue;
    if (!out.empty()) out += "\n";
    out += text;
  }
  return out;
}

bool is_agent_role(const Value& role) {
  return role.is_string() && (role.as_string() == "agent" || role.as_string() == "ROLE_AGENT");
}

// The last agent message of a task's history.
std::string history_text(const Value& history) {
  if (!history.is_array()) return "";
  const Array& items = history.as_array();
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    if (is_agent_role((*it)["role"])) return parts_text((*it)["parts"]);
  }
  return "";
}

A2aResult from_task(const Value& task) {
  A2aResult out;
  out.task_id = task["id"].get_string("");
  out.state = normalize_a2a_state(task.find_path("status.state") ? task.find_path("status.state")->get_string("")
                                                                 : std::string());
  const std::string status_text = parts_text(task["status"]["message"]["parts"]);
  if (out.state == "failed") {
    out.reply = failure(Status::internal(status_text.empty() ? "A2A: task failed" : status_text), true);
    return out;
  }
  if (out.state == "rejected") {
    out.reply = failure(Status::failed_precondition(status_text.empty() ? "A2A: task rejected" : status_text), false);
    return out;
  }
  if (out.state == "canceled") {
    out.reply = failure(Status::aborted(status_text.empty() ? "A2A: task canceled" : status_text), true);
    return out;
  }
  WorkerReply& reply = out.reply;
  reply.envelope = Value::object();
  copy_control_fields(task, &reply.envelope);
  copy_control_fields(task["metadata"], &reply.envelope);
  reply.output = artifacts_text(task["artifacts"]);
  if (reply.output.empty()) reply.output = status_text;
  if (reply.output.empty()) reply.output = history_text(task["history"]);
  if (out.state == "completed") {
    reply.envelope.set("done", true);
  } else if (out.state == "input-required" || out.state == "auth-required") {
    reply.envelope.set("done", false);
  }
  if (reply.output.empty() && out.state == "completed" && !reply.envelope.find("state_updates") &&
      !reply.envelope.find("goto")) {
    out.reply = failure(Status::internal("A2A: no text found in artifacts"), true);
  }
  return out;
}

A2aResult from_message(const Value& message) {
  A2aResult out;
  out.reply.envelope = Value::object();
  copy_control_fields(message["metadata"], &out.reply.envelope);
  out.reply.output = parts_text(message["parts"]);
  out.task_id = message["taskId"].get_string("");
  return out;
}

}  // namespace

std::string normalize_a2a_state(std::string_view state) {
  std::string s(state);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  constexpr std::string_view kPrefix = "task_state_";
  if (s.compare(0, kPrefix.size(), kPrefix) == 0) s.erase(0, kPrefix.size());
  std::replace(s.begin(), s.end(), '_', '-');
  if (s == "cancelled") s = "canceled";
  return s;
}

A2aResult parse_a2a_reply(std::string_view body) {
  A2aResult out;
  Result<Value> parsed = parse_json(body);
  if (!parsed.ok()) {
    out.reply = failure(Status::internal("A2A: invalid JSON response"), true);
    return out;
  }
  const Value& root = *parsed;
  if (!root.is_object()) {
    out.reply = failure(Status::internal("A2A: response is not a JSON object"), true);
    return out;
  }
  if (const Value* error = root.find("error"); error && !error->is_null()) {
    std::string message = (*error)["message"].is_string() ? (*error)["message"].as_string() : "A2A: JSON-RPC error";
    const int64_t code = (*error)["code"].get_int(0);
    // The request itself is wrong: sending it again cannot help.
    const bool request_error = code == -32600 || code == -32601 || code == -32602 || code == -32004 ||
                               code == -32005 || code == -32009;
    out.reply = failure(request_error ? Status::invalid_argument(message) : Status::internal(message), !request_error);
    return out;
  }
  const Value* result = root.find("result");
  if (!result) {
    out.reply = failure(Status::internal("A2A: missing result field"), true);
    return out;
  }
  if (!result->is_object()) {
    out.reply = failure(Status::internal("A2A: result is not an object"), true);
    return out;
  }
  if ((*result)["task"].is_object()) return from_task((*result)["task"]);
  if ((*result)["message"].is_object()) return from_message((*result)["message"]);
  const std::string kind = (*result)["kind"].get_string("");
  if (kind == "task" || (kind.empty() && result->find("status"))) return from_task(*result);
  if (kind == "message" || (kind.empty() && result->find("parts"))) return from_message(*result);
  out.reply = failure(Status::internal("A2A: result is neither a task nor a message"), true);
  return out;
}

}  // namespace orch::internal
