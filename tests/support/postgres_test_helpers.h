// SPDX-License-Identifier: MIT
// What the PostgreSQL tests share: the program's private server (the test
// fails, saying why, when it cannot start) and schema names no other store of
// the program uses; a schema made at an older version (migration tests).
// Test programs only (Catch).
#pragma once

#include <atomic>
#include <string>

#include "catch.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/pg_schema.h"
#include "support/postgres_cluster.h"

namespace orch::testing {

inline PostgresCluster& require_postgres() {
  auto shared = shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  return **shared;
}

// "<prefix>_<n>", n counting up per program.
inline std::string fresh_schema(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "_" + std::to_string(counter++);
}

// Creates `schema` on `pg` with the migrations up to `version` only.
inline void create_schema_at(PostgresCluster& pg, const std::string& schema, int version) {
  orch::postgres::ConnectSettings settings;
  settings.conninfo = pg.conninfo();
  settings.schema = schema;
  auto conn = orch::postgres::Connection::open(settings);
  INFO(conn.status().to_string());
  REQUIRE(conn.ok());
  Status migrated = orch::postgres::migrate_schema(**conn, schema, version);
  INFO(migrated.to_string());
  REQUIRE(migrated.ok());
}

}  // namespace orch::testing
