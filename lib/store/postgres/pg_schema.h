// SPDX-License-Identifier: MIT
//
// The PostgreSQL store's schema: an append-only list of migrations, applied
// in one transaction under an advisory lock (several instances starting at
// once migrate exactly once; the others wait, then find the schema current).
// The version lives in the table orch_schema.
#pragma once

#include <string>

#include "orch/status.h"
#include "store/postgres/pg_connection.h"

namespace orch::postgres {

// The schema version this build writes.
int latest_schema_version();

// Creates `schema` when it is not empty and missing, then applies the
// migrations the database lacks. FailedPrecondition when its version is newer
// than latest_schema_version(). `target_version` below the latest stops
// there (tests build an older schema to upgrade); a database already past it
// is left as it is.
Status migrate_schema(Connection& conn, const std::string& schema, int target_version);
inline Status migrate_schema(Connection& conn, const std::string& schema) {
  return migrate_schema(conn, schema, latest_schema_version());
}

}  // namespace orch::postgres
