// SPDX-License-Identifier: MIT
//
// Checks of a run's `callbacks` (POST /runs, POST /workflows/{id}/run), done
// once where they enter so the sender thread only ever sees good ones:
//
//   - at most kMaxCallbacks entries, each an object with an http(s) `url`
//     (orch/url.h) whose host the network policy allows (orch/host_policy.h);
//   - `headers`: an object of at most kMaxCallbackHeaders string values; names
//     are RFC 7230 tokens, values carry no CR, LF or NUL and are at most
//     kMaxCallbackHeaderBytes long (a CR/LF would split the request in two);
//     names orch sets itself (Host, Content-Length, Transfer-Encoding,
//     Connection, Content-Type, the X-Orch-* / X-NullBoiler-* signature
//     headers and other hop-by-hop headers) are refused, case-insensitively;
//   - `events`: an array of strings; `hmac_secret`: a string.
//
// Thread-safety: plain functions.
#pragma once

#include <cstddef>
#include <string>

#include "orch/host_policy.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch::server {

inline constexpr size_t kMaxCallbacks = 16;
inline constexpr size_t kMaxCallbackHeaders = 32;
inline constexpr size_t kMaxCallbackHeaderBytes = 8192;

// OK, or InvalidArgument naming the entry and the problem
// ("callbacks[0].url: ...", "callbacks[1].headers: 'Host' is set by orch").
// `callbacks` may be null (none).
Status check_callbacks(const Value& callbacks, const HostPolicy& policy);

// One header a callback may send: OK or InvalidArgument saying why not.
Status check_callback_header(const std::string& name, const std::string& value);

}  // namespace orch::server
