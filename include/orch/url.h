// SPDX-License-Identifier: MIT
//
// Url: an outbound address (a worker, a run callback, the NullTickets
// tracker, a message broker) parsed and checked once, where it enters orch.
//
// Every part that reaches a socket comes from here, already checked: the
// scheme is one orch speaks (http, https, mqtt, redis), the host is a name of
// [A-Za-z0-9._-] or an IP literal, the port is 1-65535, and no character is
// whitespace or a control character. User info ("user@host") is refused: it
// is a classic way to make a URL look like it goes somewhere else. Numeric
// IPv4 spellings other than the dotted quad ("2130706433", "127.1",
// "0x7f.1") are refused for the same reason.
//
//   auto url = orch::parse_http_url("http://127.0.0.1:8080/webhook?x=1");
//   url->origin();  // "http://127.0.0.1:8080"
//   url->target;    // "/webhook?x=1"
//
// Thread-safety: plain functions and values.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "orch/export.h"
#include "orch/status.h"

namespace orch {

// Longest URL accepted, in bytes.
inline constexpr size_t kMaxUrlBytes = 2048;

struct Url {
  std::string scheme;  // lower case: "http", "https", "mqtt" or "redis"
  std::string host;    // lower case; an IPv6 literal without its brackets
  int port = 0;        // as written, else the scheme's default (80, 443, 1883, 6379)
  std::string target;  // path and query, "/" when both are empty; the fragment is dropped
  bool has_fragment = false;

  // "scheme://host:port" (an IPv6 host in brackets).
  ORCH_EXPORT std::string origin() const;
  // "host:port" (an IPv6 host in brackets).
  std::string authority() const;
};

// Parses `text` with any of the schemes above. InvalidArgument naming the
// problem ("url has no host: ...", "url port must be 1-65535: ...").
ORCH_EXPORT Result<Url> parse_url(std::string_view text);

// parse_url, and the scheme must be http or https.
ORCH_EXPORT Result<Url> parse_http_url(std::string_view text);

}  // namespace orch
