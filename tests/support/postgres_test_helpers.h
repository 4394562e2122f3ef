// SPDX-License-Identifier: MIT
// What the PostgreSQL tests share: the program's private server (the test
// fails, saying why, when it cannot start) and schema names no other store of
// the program uses. Test programs only (Catch).
#pragma once

#include <atomic>
#include <string>

#include "catch.h"
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

}  // namespace orch::testing
