// SPDX-License-Identifier: MIT
//
// Wire formats of the built-in HTTP worker protocols (NullBoiler engine
// reference §7.4-7.9, A2A v0.3 / v1.0): request URLs and bodies, and how a
// response becomes a WorkerReply. Pure functions; no I/O. Part of orch::core
// because both orch::http_workers and orch::async_workers use them: exported
// for orch's own components, not public API.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"
#include "orch/dispatcher.h"
#include "orch/worker_registry.h"

namespace orch::internal {

// An HTTP response as the wire functions read it (the HTTP protocols fill it in).
struct ORCH_EXPORT HttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case

  // The first header named `name` (lower case), or nullptr.
  const std::string* header(std::string_view name) const;
};

enum class WireProtocol { kWebhook, kApiChat, kOpenAiChat, kA2a };

// The session key sent to the worker: the request's session_id, else
// "run_<run_id>_step_<step id>" (the request's step_id).
ORCH_EXPORT std::string session_key(const WorkerRequest& request);

// The URL a call goes to: the worker URL without trailing '/'; a2a appends
// "/a2a"; webhook URLs must name a path.
ORCH_EXPORT Result<std::string> call_url(WireProtocol protocol, const WorkerInfo& worker);

// Checks what a protocol needs of a worker record (openai_chat: a model).
ORCH_EXPORT Status validate_worker(WireProtocol protocol, const WorkerInfo& worker);

// The JSON request body. For a2a, `message_id` names the message and
// `task_id` (may be empty) continues a task that asked for input.
ORCH_EXPORT Result<std::string> request_body(WireProtocol protocol, const WorkerInfo& worker, const WorkerRequest& request,
                                 const std::string& message_id = "", const std::string& task_id = "");

// A non-2xx response as a failed reply: 429 (rate_limit_exceeded or
// Retry-After) is retryable with retry_after_ms, insufficient_quota and other
// 4xx are not retryable, 5xx is retryable. `now_ms` reads HTTP-date values.
ORCH_EXPORT WorkerReply http_error_reply(const HttpResponse& response, int64_t now_ms);

// Milliseconds from a Retry-After value (delta seconds or an HTTP-date), or -1.
ORCH_EXPORT int64_t parse_retry_after(std::string_view value, int64_t now_ms);

// The reply of a webhook / api_chat / openai_chat worker (§7.9): the output is
// the first of `response`, `reply`, `choices[0].message.content`; an `error`
// string or {message} fails the call; the envelope holds the top-level control
// fields. A body with control fields but no output text is accepted ("").
ORCH_EXPORT WorkerReply parse_chat_reply(std::string_view body);

// The control fields of `object` (goto, state_updates, usage, rate_limit,
// ui_messages, stream_messages, done) copied into `envelope`.
ORCH_EXPORT void copy_control_fields(const Value& object, Value* envelope);

// An OpenAI-style x-ratelimit-* header set as a rate_limit object, or null.
ORCH_EXPORT Value rate_limit_from_headers(const HttpResponse& response);

// The reply of an A2A JSON-RPC call (v0.3 Task or Message result, v1.0
// {"task"|"message": ...} result). `task_id` and `state` (normalized to the
// v0.3 spelling, e.g. "input-required") are reported for task results.
struct A2aResult {
  WorkerReply reply;
  std::string task_id;
  std::string state;
};
ORCH_EXPORT A2aResult parse_a2a_reply(std::string_view body);

// "TASK_STATE_INPUT_REQUIRED" → "input-required"; v0.3 names pass through.
ORCH_EXPORT std::string normalize_a2a_state(std::string_view state);

}  // namespace orch::internal
