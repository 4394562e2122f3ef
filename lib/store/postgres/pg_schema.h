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
// than latest_schema_version().
Status migrate_schema(Connection& conn, const std::string& schema);

}  // namespace orch::postgres
