// SPDX-License-Identifier: MIT
//
// Wire format shared by the asynchronous worker protocols (mqtt,
// redis_stream): broker URLs, the request payload and reply parsing
// (docs/async-workers.md; NullBoiler engine reference §7.10-7.11). Pure
// functions; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "orch/clock.h"
#include "orch/status.h"
#include "orch/dispatcher.h"
#include "orch/worker_registry.h"

namespace orch::internal {

// `scheme://host[:port]/name`: the broker and the topic or stream name (may
// contain '/').
struct BrokerTarget {
  std::string host;
  int port = 0;
  std::string name;
  // "host:port"
  std::string endpoint() const { return host + ":" + std::to_string(port); }
};

// InvalidArgument "invalid mqtt:// URL: ..." and the like.
Result<BrokerTarget> parse_broker_url(std::string_view url, std::string_view scheme, int default_port);

// A call to a broker worker, checked before it is sent.
struct BrokerCall {
  BrokerTarget target;
  SteadyTime deadline;  // the request's, or now + default_timeout_ms
  int64_t wait_ms = 0;  // from now to the deadline
};

// Parses the worker's `scheme://` URL, requires the request's call id (the
// correlation id replies carry) and works out the deadline. Errors name
// `protocol` and are not worth retrying.
Result<BrokerCall> begin_broker_call(const WorkerInfo& worker, const WorkerRequest& request,
                                     std::string_view scheme, int default_port, std::string_view protocol,
                                     SteadyTime now, int64_t default_timeout_ms);

// "250 ms", "4.0 s": how long a call waited, for error messages.
std::string describe_wait(int64_t ms);

// Instance names: 1-64 of [A-Za-z0-9_.-].
Status check_instance_name(std::string_view instance);

// The JSON request body: correlation_id, reply_to, timestamp_ms, message,
// session_key, token (when set) as NullBoiler, plus run_id, node, node_type,
// attempt, turn, worker_id, deadline_ms and item (send items).
std::string async_request_payload(const WorkerInfo& worker, const WorkerRequest& request,
                                  const std::string& reply_to, int64_t now_ms, int64_t deadline_ms);

// A reply: the correlation id it names and what it means for the call.
struct AsyncReply {
  std::string correlation_id;
  WorkerReply reply;
};

// Reads a reply payload. `correlation` (an MQTT v5 correlation-data property
// or a stream field) wins over the payload's "correlation_id". The reply body
// is read as a webhook reply (response / reply / choices, error, control
// fields); "retryable": false makes an error final. InvalidArgument when no
// correlation id can be found; a body that is not a JSON object is a failed
// reply.
Result<AsyncReply> parse_async_reply(std::string_view payload, std::string correlation);

}  // namespace orch::internal
