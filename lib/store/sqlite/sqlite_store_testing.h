// SPDX-License-Identifier: MIT
//
// A test-only hook into the SQLite store: run raw SQL on its database, e.g. to
// plant damaged rows and check that reads fail cleanly. Not part of the
// installed API.
#pragma once

#include <string>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/store.h"

namespace orch {

// InvalidArgument when `store` is not a SQLite store.
ORCH_EXPORT Status sqlite_execute_for_testing(Store& store, const std::string& sql);
// The integer in the first column of the first row `sql` reads.
ORCH_EXPORT Result<int64_t> sqlite_query_int_for_testing(Store& store, const std::string& sql);
// How many runs' latest checkpoint documents the store keeps in memory.
ORCH_EXPORT Result<int64_t> sqlite_cached_documents_for_testing(Store& store);
// The SQL of the store's statements that scanned a whole table or index
// instead of seeking by a key (on its pooled connections, so call it while
// no operation is in flight).
ORCH_EXPORT Result<std::vector<std::string>> sqlite_full_scans_for_testing(Store& store);
// Off: write_batch stores each event in a row of its own, as before schema
// 10 (for tests that turn a file back into an older schema); on by default.
ORCH_EXPORT Status sqlite_batch_events_for_testing(Store& store, bool on);
// How many WAL checkpoints the store has started.
ORCH_EXPORT Result<int64_t> sqlite_wal_checkpoints_for_testing(Store& store);

}  // namespace orch
