// SPDX-License-Identifier: MIT
//
// The SQLite store's schema and its migrations.
//
// The file's PRAGMA user_version is the schema version; migration N turns
// version N-1 into N. Opening runs the missing migrations in one write
// transaction, so concurrent openers apply each exactly once and a crash
// mid-way leaves the old version intact. PRAGMA application_id marks the file
// as orch's, so a foreign SQLite file is refused instead of altered.
#pragma once

#include "orch/status.h"
#include "store/sqlite/sqlite_connection.h"

namespace orch::sqlite {

// The version the newest migration produces.
int latest_schema_version();

// Per-connection settings (WAL is a property of the file and set once by
// migrate_schema; synchronous and the like are per connection), and the
// page size of a file not yet written (SqliteStoreOptions::page_size).
void configure_connection(Connection& conn, int page_size);

// Brings the file up to latest_schema_version(). FailedPrecondition when it
// was written by a newer orch or belongs to another application.
Status migrate_schema(Connection& conn, bool in_memory);

}  // namespace orch::sqlite
