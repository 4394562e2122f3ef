// SPDX-License-Identifier: MIT
// Responses of webhook / api_chat / openai_chat workers (NullBoiler engine
// reference §7.9, SPEC §6) and HTTP-level failures of every HTTP protocol.
#include <time.h>

#include <cctype>
#include <cstdlib>
#include <initializer_list>

#include "workers/worker_wire.h"

namespace orch::internal {

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}
namespace {

constexpr std::string_view kControlFields[] = {"goto",        "state_updates",   "usage", "rate_limit",
                                               "ui_messages", "stream_messages", "done"};

WorkerReply failure(Status status, bool retryable) {
  WorkerReply reply;
  reply.status = std::move(status);
  reply.retryable = retryable;
  return reply;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The error text of a JSON body: error (string), error.message, message.
std::string error_message(const Value& body) {
  const Value& error = body["error"];
  if (error.is_string()) return error.as_string();
  if (error["message"].is_string()) return error["message"].as_string();
  if (body["message"].is_string()) return body["message"].as_string();
  return "";
}

// True when any of the error's code/type fields equals `code`.
bool has_error_code(const Value& body, std::string_view code) {
  const Value& error = body["error"];
  for (const Value* v : {&error["code"], &error["type"], &body["code"], &body["type"], &error}) {
    if (v->is_string() && v->as_string() == code) return true;
  }
  return false;
}

// "6m0s", "1s", "12ms", "1.5s", "2" (seconds) → milliseconds; -1 when unreadable.
int64_t parse_duration_ms(std::string_view text) {
  text = trim(text);
  if (text.empty()) return -1;
  double total = 0;
  std::string buffer(text);
  const char* p = buffer.c_str();
  while (*p) {
    char* end = nullptr;
    double n = std::strtod(p, &end);
    if (end == p) return -1;
    p = end;
    std::string unit;
    while (*p && std::isalpha(static_cast<unsigned char>(*p))) unit.push_back(*p++);
    if (unit.empty() || unit == "s") {
      total += n * 1000;
    } else if (unit == "ms") {
      total += n;
    } else if (unit == "m") {
      total += n * 60000;
    } else if (unit == "h") {
      total += n * 3600000;
    } else {
      return -1;
    }
  }
  return static_cast<int64_t>(total);
}

int64_t header_int(const HttpResponse& response, std::string_view name, bool* found) {
  const std::string* v = response.header(name);
  if (!v) return 0;
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (end == v->c_str()) return 0;
  *found = true;
  return n;
}

}  // namespace

int64_t parse_retry_after(std::string_view value, int64_t now_ms) {
  value = trim(value);
  if (value.empty()) return -1;
  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    std::string text(value);
    char* end = nullptr;
    double seconds = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0' || seconds < 0) return -1;
    return static_cast<int64_t>(seconds * 1000);
  }
  // HTTP-date (IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT".
  std::string text(value);
  struct tm tm = {};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (!end) return -1;
  const int64_t when_ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  return when_ms > now_ms ? when_ms - now_ms : 0;
}

WorkerReply http_error_reply(const HttpResponse& response, int64_t now_ms) {
  const int code = response.status;
  Value body;
  if (Result<Value> parsed = parse_json(response.body); parsed.ok()) body = std::move(parsed).value();
  std::string message = "HTTP " + std::to_string(code);
  if (std::string detail = error_message(body); !detail.empty()) message += ": " + detail;

  int64_t retry_after_ms = -1;
  if (const std::string* ms = response.header("retry-after-ms")) retry_after_ms = parse_duration_ms(*ms + "ms");
  if (retry_after_ms < 0) {
    if (const std::string* v = response.header("retry-after")) retry_after_ms = parse_retry_after(*v, now_ms);
  }

  if (code == 429) {
    if (has_error_code(body, "insufficient_quota")) {
      return failure(Status::resource_exhausted(message), false);  // no retry pays the bill
    }
    WorkerReply reply = failure(Status::resource_exhausted(message), true);
    reply.retry_after_ms = retry_after_ms;
    return reply;
  }
  if (code >= 400 && code < 500) {
    switch (code) {
      case 404: return failure(Status::not_found(message), false);
      case 401:
      case 403: return failure(Status::failed_precondition(message), false);
      case 408: return failure(Status::deadline_exceeded(message), true);
      default: return failure(Status::invalid_argument(message), false);
    }
  }
  WorkerReply reply = failure(Status::unavailable(message), true);
  reply.retry_after_ms = retry_after_ms;
  return reply;
}

void copy_control_fields(const Value& object, Value* envelope) {
  if (!object.is_object()) return;
  for (std::string_view name : kControlFields) {
    if (const Value* v = object.find(name)) envelope->set(std::string(name), *v);
  }
}

WorkerReply parse_chat_reply(std::string_view body) {
  Result<Value> parsed = parse_json(body);
  if (!parsed.ok() || !parsed->is_object()) {
    return failure(Status::internal("worker response must be a JSON object"), true);
  }
  const Value& root = *parsed;
  const Value& error = root["error"];
  if (error.is_string()) return failure(Status::internal(error.as_string()), true);
  if (error["message"].is_string()) return failure(Status::internal(error["message"].as_string()), true);

  WorkerReply reply;
  reply.envelope = Value::object();
  copy_control_fields(root, &reply.envelope);
  const Value* output = nullptr;
  if (root["response"].is_string()) {
    output = &root["response"];
  } else if (root["reply"].is_string()) {
    output = &root["reply"];
  } else if (const Value* content = root.find_path("choices.0.message.content"); content && content->is_string()) {
    output = content;
  }
  if (output) {
    reply.output = output->as_string();
    return reply;
  }
  // orch extension: a reply that only steers (state_updates, goto, done) needs no text.
  if (reply.envelope.find("state_updates") || reply.envelope.find("goto") || reply.envelope.find("done")) {
    return reply;
  }
  if (root["status"].is_string() && root["status"].as_string() == "received") {
    return failure(Status::internal("worker acknowledged request but returned no synchronous output"), true);
  }
  return failure(Status::internal("worker response missing response/reply/choices.message.content field"), true);
}

Value rate_limit_from_headers(const HttpResponse& response) {
  bool found = false;
  int64_t remaining = header_int(response, "x-ratelimit-remaining-requests", &found);
  int64_t limit = header_int(response, "x-ratelimit-limit-requests", &found);
  const std::string* reset = response.header("x-ratelimit-reset-requests");
  if (!found) {
    remaining = header_int(response, "x-ratelimit-remaining", &found);
    limit = header_int(response, "x-ratelimit-limit", &found);
    reset = response.header("x-ratelimit-reset");
  }
  if (!found) return Value();
  int64_t reset_ms = reset ? parse_duration_ms(*reset) : 0;
  return Value::object({{"remaining", static_cast<long long>(remaining)},
                        {"limit", static_cast<long long>(limit)},
                        {"reset_ms", static_cast<long long>(reset_ms < 0 ? 0 : reset_ms)}});
}

}  // namespace orch::internal
