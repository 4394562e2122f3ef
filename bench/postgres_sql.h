// SPDX-License-Identifier: MIT
//
// The benchmarks' own statements on a PostgreSQL server (dropping a
// repetition's schema, disabling a trigger to measure its cost): one
// connection per call, through libpq. Not product code.
//
// Thread-safety: any thread; each call opens and closes its own connection.
#pragma once

#include <string>

namespace orch::bench {

// Runs `sql` (one or more statements) on the server `conninfo` names (a
// libpq conninfo or URI); "" on success, else what went wrong.
std::string exec_postgres_sql(const std::string& conninfo, const std::string& sql);

}  // namespace orch::bench
