// SPDX-License-Identifier: MIT
//
// A durable Store on one SQLite file (WAL mode). Runs survive process crashes
// (every commit is durable against `kill -9`) and, for checkpoints committed
// with sync_to_disk, power loss.
//
// Checkpoints are stored incrementally: a checkpoint keeps only what changed
// since the previous checkpoint of its run (arrays that only grew keep just the
// new items), with a full snapshot now and then, so storage grows with the
// size of the changes rather than with steps x state size. Every checkpoint
// still reads back as a full state.
//
// Several processes may open the same file; writers wait for each other up to
// busy_timeout_ms and then fail with Unavailable.
//
// Thread-safety: the returned Store may be used from many threads at once.
// Reads run in parallel with each other and with a write; writes are short
// transactions that queue behind each other.
//
//   auto store = orch::open_sqlite_store("/var/lib/orch/orch.db");
//   if (!store.ok()) return store.status();
//   auto engine = orch::Engine::open({*store});
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/store.h"

namespace orch {

struct SqliteStoreOptions {
  // How long a write waits for another process's write before giving up with
  // Unavailable.
  int busy_timeout_ms = 5000;
  // Connections kept open for reuse; more are opened while many threads are
  // busy at once and closed again when they return.
  size_t max_idle_connections = 64;
  // At most this many deltas follow a snapshot, which bounds the rows read to
  // rebuild one checkpoint. A snapshot is also taken earlier, as soon as the
  // deltas since the last one add up to more bytes than that snapshot.
  int max_delta_chain = 512;
  // Runs whose latest checkpoint state is kept in memory, so a commit diffs
  // against it instead of reading it back from the file.
  size_t cached_runs = 1024;
  // The write-ahead log is copied back into the database file (a checkpoint,
  // with its fsyncs, on the store's own thread) once it holds this many pages
  // of 4 KiB (64 MiB by default; SQLite's own default, 1000, checkpointed
  // every few dozen supersteps under load). While a reader keeps part of the
  // log in use, the copy is retried per 1/64 of this much new log; a log four
  // times this size is copied by the committing thread itself, as SQLite would.
  int wal_checkpoint_pages = 16000;
  // Bytes per page of a database file this store creates: a power of two
  // from 512 to 65536 (InvalidArgument otherwise). A file that exists keeps
  // the page size it was created with. A commit writes every page it changed
  // to the log in full (about ten per superstep, one per table and index
  // touched), so pages smaller than SQLite's default 4096 make each commit
  // cheaper: 2048 took seq and par runs 15-20% less time than 4096 here.
  int page_size = 2048;
};

// Opens (creating if missing) the database at `path` and brings its schema up
// to date. Opening the same file again, from this or another process, is fine.
// ":memory:" gives a private in-memory database served by one connection.
// Errors: FailedPrecondition when the file was written by a newer orch (its
// schema version is unknown), Internal when it is not a database or is
// corrupt, Unavailable when it stays locked for busy_timeout_ms.
ORCH_EXPORT Result<std::shared_ptr<Store>> open_sqlite_store(
    const std::string& path, const SqliteStoreOptions& options = {});

// The schema version this build writes (PRAGMA user_version of the file).
ORCH_EXPORT int sqlite_store_schema_version();

// Bytes the checkpoints of `run_id` take in the database (the stored snapshot
// and delta documents, without SQLite's own overhead), for capacity planning
// and tests. InvalidArgument when `store` is not a SQLite store.
ORCH_EXPORT Result<int64_t> sqlite_checkpoint_bytes(Store& store, const std::string& run_id);

}  // namespace orch
