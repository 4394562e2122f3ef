// SPDX-License-Identifier: MIT
#include "callback_check.h"

#include <algorithm>
#include <cctype>

#include "orch/url.h"

namespace orch::server {
namespace {

// Headers orch writes itself or that steer the connection: a callback that
// set them could smuggle a second request or forge a signature.
const char* const kReservedHeaders[] = {
    "host",           "content-length",     "transfer-encoding",  "connection",       "content-type",
    "keep-alive",     "proxy-connection",   "te",                 "trailer",          "upgrade",
    "expect",         "x-orch-timestamp",   "x-orch-nonce",       "x-orch-signature", "x-nullboiler-timestamp",
    "x-nullboiler-nonce", "x-nullboiler-signature",
};

// RFC 7230 §3.2.6 tchar.
bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// `name` quoted for an error message, cut short: it may be hostile.
std::string quoted(const std::string& name) {
  std::string shown;
  for (char c : name.substr(0, 64)) shown += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  return "'" + shown + "'";
}

Status check_headers(const Value& headers, const std::string& where) {
  if (headers.is_null()) return Status();
  if (!headers.is_object()) return Status::invalid_argument(where + ": must be an object of strings");
  if (headers.size() > kMaxCallbackHeaders) {
    return Status::invalid_argument(where + ": at most " + std::to_string(kMaxCallbackHeaders) + " headers");
  }
  for (const auto& [name, value] : headers.as_object()) {
    if (!value.is_string()) return Status::invalid_argument(where + ": " + quoted(name) + " must be a string");
    Status s = check_callback_header(name, value.as_string());
    if (!s.ok()) return Status::invalid_argument(where + ": " + s.message());
  }
  return Status();
}

Status check_one(const Value& cb, const HostPolicy& policy, const std::string& where) {
  if (!cb.is_object()) return Status::invalid_argument(where + " must be an object");
  const Value& url = cb["url"];
  if (!url.is_string()) return Status::invalid_argument(where + ".url is required and must be a string");
  Result<Url> parsed = parse_http_url(url.as_string());
  if (!parsed.ok()) return Status::invalid_argument(where + ".url: " + parsed.status().message());
  Status allowed = check_host(policy, parsed->host);
  if (!allowed.ok()) return Status::invalid_argument(where + ".url: " + allowed.message());
  ORCH_RETURN_IF_ERROR(check_headers(cb["headers"], where + ".headers"));
  const Value& events = cb["events"];
  if (!events.is_null()) {
    if (!events.is_array()) return Status::invalid_argument(where + ".events must be an array of strings");
    for (const Value& e : events.as_array()) {
      if (!e.is_string()) return Status::invalid_argument(where + ".events must be an array of strings");
    }
  }
  const Value& secret = cb["hmac_secret"];
  if (!secret.is_null() && !secret.is_string()) return Status::invalid_argument(where + ".hmac_secret must be a string");
  return Status();
}

}  // namespace

Status check_callback_header(const std::string& name, const std::string& value) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char)) {
    return Status::invalid_argument("header name " + quoted(name) + " is not an RFC 7230 token");
  }
  const std::string key = lower(name);
  for (const char* reserved : kReservedHeaders) {
    if (key == reserved) return Status::invalid_argument("header " + quoted(name) + " is set by orch and cannot be given");
  }
  if (value.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
    return Status::invalid_argument("header " + quoted(name) + " value must not contain CR, LF or NUL");
  }
  if (value.size() > kMaxCallbackHeaderBytes) {
    return Status::invalid_argument("header " + quoted(name) + " value is longer than " +
                                    std::to_string(kMaxCallbackHeaderBytes) + " bytes");
  }
  return Status();
}

Status check_callbacks(const Value& callbacks, const HostPolicy& policy) {
  if (callbacks.is_null()) return Status();
  if (!callbacks.is_array()) return Status::invalid_argument("callbacks must be an array");
  if (callbacks.size() > kMaxCallbacks) {
    return Status::invalid_argument("callbacks: at most " + std::to_string(kMaxCallbacks) + " per run");
  }
  size_t i = 0;
  for (const Value& cb : callbacks.as_array()) {
    ORCH_RETURN_IF_ERROR(check_one(cb, policy, "callbacks[" + std::to_string(i++) + "]"));
  }
  return Status();
}

}  // namespace orch::server
