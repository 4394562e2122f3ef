// SPDX-License-Identifier: MIT
// libpq failures as orch Status codes (see pg_status.h).
#include "store/postgres/pg_status.h"

#include <libpq-fe.h>

namespace orch::postgres {
namespace {

std::string trimmed(const char* message) {
  std::string out = message != nullptr ? message : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

std::string sqlstate_of(const pg_result* result) {
  if (result == nullptr) return "";
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return state != nullptr ? state : "";
}

Status status_from_result(const pg_result* result, const std::string& what) {
  const std::string state = sqlstate_of(result);
  const std::string message = what + ": " + trimmed(PQresultErrorMessage(result)) +
                              (state.empty() ? "" : " (SQLSTATE " + state + ")");
  // Class 08: connection exceptions. 57P01-57P03: the server is shutting
  // down or starting. 57014: statement_timeout (or a cancel). 55P03:
  // lock_timeout. Class 40: serialization failure, deadlock. Class 53: out
  // of connections, memory or disk. All may pass.
  if (starts_with(state, "08") || starts_with(state, "57P") || state == "57014" || state == "55P03" ||
      starts_with(state, "40") || starts_with(state, "53")) {
    return Status::unavailable(message);
  }
  if (state == "23505") return Status::already_exists(message);
  if (state == kRunMissingState) return Status::not_found(message);
  if (state == kStaleChainState) return Status::aborted(message);
  // Store::lease_lost() recognizes it by the prefix.
  if (state == kLeaseLostState) return Status::aborted("lease lost: " + message);
  // Class 22: data exceptions (invalid UTF-8, a value too long, ...).
  if (starts_with(state, "22")) return Status::invalid_argument(message);
  if (state.empty()) return Status::unavailable(message);  // no server error: the connection failed
  return Status::internal(message);
}

Status status_from_connection(const pg_conn* conn, const std::string& what) {
  return Status::unavailable(what + ": " + trimmed(conn != nullptr ? PQerrorMessage(conn) : "out of memory"));
}

}  // namespace orch::postgres
