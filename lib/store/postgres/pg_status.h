// SPDX-License-Identifier: MIT
//
// How the PostgreSQL store turns libpq's failures into orch Status codes, per
// store.h's error contract: what retrying may fix (a lost connection, a
// server shutting down, a timeout, a deadlock) is Unavailable; a duplicate
// key is AlreadyExists; bad data is InvalidArgument; the rest is Internal.
#pragma once

#include <string>

#include "orch/status.h"

struct pg_result;
struct pg_conn;

namespace orch::postgres {

// SQLSTATEs the store raises itself (migration 1 defines the functions that
// raise them, see pg_schema.cc).
inline constexpr const char* kRunMissingState = "OR404";   // orch_lock_run: no such run
inline constexpr const char* kStaleChainState = "OR409";   // the run's latest checkpoint moved
inline constexpr const char* kLeaseLostState = "OR410";    // orch_lock_run_fenced: another owner or epoch

// The SQLSTATE of a failed result ("" when it has none).
std::string sqlstate_of(const pg_result* result);

// The Status for a failed statement's result, its message prefixed by `what`.
Status status_from_result(const pg_result* result, const std::string& what);

// The Status for a connection that failed outside any result (sending,
// reading, connecting): Unavailable with libpq's message.
Status status_from_connection(const pg_conn* conn, const std::string& what);

}  // namespace orch::postgres
