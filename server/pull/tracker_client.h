// SPDX-License-Identifier: MIT
//
// TrackerClient: every HTTP call orch makes to NullTickets in pull mode, in
// NullTickets' wire format (reference/nullboiler-api.md §8.3). Each call opens
// its own connection (TCP_NODELAY) and is bounded by the configured timeout,
// so a slow or dead NullTickets never blocks the tracker for long.
//
// Results separate "NullTickets said no" from "could not ask": a transport
// error or a 5xx is transient (retry later, keep the task), a 4xx is an answer.
//
// Thread-safety: every method may be called from any thread at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "orch/status.h"
#include "orch/value.h"

namespace orch::server {

struct TrackerReply {
  int status = 0;        // HTTP status; 0 when no answer came (transport error)
  std::string error;     // transport error or the error message of the body
  Value json;            // the body parsed (null when empty or not JSON)

  bool ok() const { return status >= 200 && status < 300; }
  // No answer, or a server-side error: the question may be asked again.
  bool transient() const { return status == 0 || status >= 500 || status == 429; }
  // A short description for logs and error messages.
  std::string describe() const;
};

// A task handed out by POST /leases/claim.
struct Claim {
  Value task;             // the task object, as NullTickets sent it
  std::string task_id;
  std::string run_id;     // NullTickets' run id (not an orch run)
  int64_t attempt = 1;    // NullTickets' attempt number of that run
  std::string lease_id;
  std::string lease_token;
  int64_t expires_at_ms = 0;
};

class TrackerClient {
 public:
  // `base_url` like "http://127.0.0.1:7700" (a path prefix is kept).
  TrackerClient(std::string base_url, std::string api_token, int64_t timeout_ms);

  // POST /leases/claim. Returns no claim on 204; an error Status when
  // NullTickets answered something else (or not at all). `per_state` (an
  // object of stage → limit, or null) is sent as concurrency.per_state so
  // NullTickets can skip tasks in full stages before handing them out.
  Result<std::optional<Claim>> claim(const std::string& agent_id, const std::string& role, int64_t lease_ttl_ms,
                                     const Value& per_state);
  // POST /leases/{id}/heartbeat with the lease token. ok() with an integer
  // expires_at_ms in json is a renewed lease.
  TrackerReply heartbeat(const std::string& lease_id, const std::string& lease_token);
  // GET /tasks/{id}.
  TrackerReply get_task(const std::string& task_id);
  // POST /runs/{id}/transition.
  TrackerReply transition(const std::string& run_id, const std::string& lease_token, const std::string& trigger,
                          const std::string& expected_stage, std::optional<int64_t> expected_task_version,
                          const Value& usage);
  // POST /runs/{id}/fail: fails NullTickets' run and releases its lease.
  TrackerReply fail(const std::string& run_id, const std::string& lease_token, const std::string& error,
                    const Value& usage);
  // POST /runs/{id}/events.
  TrackerReply post_event(const std::string& run_id, const std::string& lease_token, const std::string& kind,
                          const Value& data);

  const std::string& base_url() const { return base_url_; }

 private:
  TrackerReply call(const char* method, const std::string& path, const Value* body, const std::string& bearer);

  std::string base_url_;
  std::string origin_;  // scheme://host[:port]
  std::string prefix_;  // path prefix of the base URL, without a trailing '/'
  std::string api_token_;
  int64_t timeout_ms_;
};

// Percent-encodes one path segment (ids may contain '/', '?', spaces ...).
std::string encode_path_segment(const std::string& segment);

}  // namespace orch::server
