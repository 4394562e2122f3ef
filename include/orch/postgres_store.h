// SPDX-License-Identifier: MIT
//
// A durable Store on a PostgreSQL database (PostgreSQL 12 or newer), for
// several engines (several `orch serve` instances) sharing one database.
//
// What lives in the database: everything the Store interface keeps (runs,
// checkpoints, steps, events, pending writes, workflows, host records). The
// rules that must hold across instances are the database's: run ids,
// idempotency keys and workflow ids are UNIQUE constraints, event seqs are
// taken under the run row's lock (exact and gapless however many instances
// append), leases are claimed with one conditional UPDATE on the database's
// clock (a run locked by another instance's transaction is skipped, as with
// FOR UPDATE SKIP LOCKED, rather than waited for).
//
// Checkpoints are stored incrementally, as by the SQLite store (the same
// format: store/checkpoint_codec.h): a checkpoint keeps what changed since
// the previous one, with a full snapshot now and then.
//
// The schema is versioned: opening a store applies the missing migrations,
// under an advisory lock, so instances starting at once migrate once. A
// database whose schema is newer than this build is refused.
//
// Failures: a refused or lost connection is Unavailable (naming the server
// libpq tried); nothing waits for ever: connecting is bounded by
// connect_timeout_s, each statement by statement_timeout_ms (enforced both by
// the server and by the client, so a server that stops answering is noticed),
// waiting for a pooled connection by acquire_timeout_ms.
//
// Ownership: the returned Store owns its connections and closes them when the
// last reference goes. Thread-safety: it may be used from many threads at
// once; each call borrows one pooled connection for its duration.
//
//   auto store = orch::new_postgres_store("postgresql:///orch?host=/run/postgresql");
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

// PostgresStoreOptions::max_connections' default: twice this machine's
// hardware threads (the engine's default thread count), at least 2, at most
// 8. Connections beyond the database server's cores mostly queue there and
// contend (docs/deployment.md).
ORCH_EXPORT size_t default_postgres_max_connections();

struct PostgresStoreOptions {
  // Connections the store opens at most. Calls beyond that wait for one to
  // come back (see acquire_timeout_ms). An engine superstep's commit holds
  // one for one round trip (its statements go out as one pipeline), an API
  // read for one or two. Keep the sum over all instances below the server's
  // max_connections.
  size_t max_connections = default_postgres_max_connections();
  // How long a call waits for a free connection before failing with
  // Unavailable.
  int acquire_timeout_ms = 10000;
  // libpq's connect_timeout, in seconds (libpq treats values below 2 as 2),
  // for each new connection. Overrides a connect_timeout in the conninfo.
  int connect_timeout_s = 5;
  // The server aborts a statement that runs longer (statement_timeout), and
  // the client gives up on a server silent for this long plus a second
  // (Unavailable; the connection is closed). 0: no limit (not advised).
  int statement_timeout_ms = 30000;
  // How long a statement waits for a row lock another transaction holds
  // (lock_timeout) before failing with Unavailable. 0: only
  // statement_timeout_ms bounds it.
  int lock_timeout_ms = 10000;
  // The PostgreSQL schema the tables live in, created if missing. Empty: the
  // connection's default (normally "public"). Several orch deployments (or
  // tests) can share one database in different schemas.
  std::string schema;
  // Every commit that does not ask for sync_to_disk (all but checkpoint
  // commits under Durability::kFull) runs with synchronous_commit = off: it
  // survives a crash of orch at once, and a crash of the PostgreSQL server
  // unless that happens within wal_writer_delay (200 ms by default) of the
  // commit, as SQLite's synchronous=NORMAL. Commits that ask for
  // sync_to_disk wait for the WAL flush. false: every commit waits.
  bool relaxed_unsynced_commits = true;
  // Like SqliteStoreOptions::max_delta_chain: at most this many deltas follow
  // a snapshot (bounds the rows read to rebuild one checkpoint).
  int max_delta_chain = 512;
  // Runs whose latest checkpoint document is kept in memory, so a commit diffs
  // against it instead of reading it back (checked against the database: a
  // run another instance wrote meanwhile is read back).
  size_t cached_runs = 1024;
  // Appended events are announced to the database's listeners (LISTEN on
  // channel orch_changes), so that other instances' watch_changes() hear of
  // them (their SSE streams follow runs executed elsewhere). false saves the
  // notification (a few percent of the database's CPU per superstep) where
  // no other instance reads this store's runs.
  bool announce_events = true;
  // With announce_events: announce a run's writes only while some watch on
  // the database follows the run (StoreWatch::follow; orch serve's event
  // streams do), instead of every write of every run: PostgreSQL delivers
  // each notification to every listening instance. A store learns who
  // follows through a watch_changes() of its own; until it has one it
  // announces every run. Watches that want runs they do not follow must
  // leave this off.
  bool announce_followed_only = false;
  // Group commit: engine supersteps of different runs that arrive together
  // are written in one transaction (one statement per run, one commit for
  // all), by at most this many groups at once, each holding one connection
  // for a round trip. A run whose lease or checkpoint chain no longer
  // matches is refused alone and written on its own. 0: half of
  // max_connections, at least 1 (measured with 100 runs in flight on 2
  // cores: docs/deployment.md); at most max_connections. Batches handed
  // over without waiting (write_batch_async) go to one writer thread per
  // group writer, a run always to the same one: each writes its queue as
  // groups and calls the batches back in order.
  size_t group_commit_writers = 0;
};

// Connects to the database `conninfo` names (a libpq connection string,
// "host=/run/postgresql dbname=orch", or URI, "postgresql://user@host/orch",
// "postgres:///orch?host=/tmp") and brings its schema up to date.
// Errors: InvalidArgument for a malformed conninfo or options; Unavailable
// when the server cannot be reached; FailedPrecondition when the database's
// orch schema is newer than this build; Internal, with the server's message,
// for what retrying will not fix (failed authentication, no CREATE privilege).
ORCH_EXPORT Result<std::shared_ptr<Store>> new_postgres_store(const std::string& conninfo,
                                                              PostgresStoreOptions options = {});

// True for the values `orch serve --db` treats as PostgreSQL: URIs starting
// with postgres:// or postgresql://.
ORCH_EXPORT bool is_postgres_uri(const std::string& db);

// The schema version this build writes (the orch_schema table).
ORCH_EXPORT int postgres_store_schema_version();

// Bytes the checkpoints of `run_id` take (the stored snapshot and delta
// documents, without PostgreSQL's own overhead), for capacity planning and
// tests. InvalidArgument when `store` is not a PostgreSQL store.
ORCH_EXPORT Result<int64_t> postgres_checkpoint_bytes(Store& store, const std::string& run_id);

}  // namespace orch
