// SPDX-License-Identifier: MIT
// Schema migrations of the SQLite store (see sqlite_schema.h).
#include "store/sqlite/sqlite_schema.h"

#include <mutex>
#include <string>

#include "store/sqlite/sqlite_definitions.h"
#include "store/sqlite/sqlite_packed_value.h"

namespace orch::sqlite {
namespace {

// "orch" in ASCII.
constexpr int kApplicationId = 0x6f726368;

// Migration N (1-based) takes the schema from version N-1 to N. Append only:
// a released migration never changes, or files that already ran it diverge.
//
// Tables use an INTEGER PRIMARY KEY `pk` where listing order is insertion
// order (runs newest first, steps and workflows in first-write order).
// JSON columns hold compact JSON text. Checkpoint rows hold either a snapshot
// document or a delta (see store/checkpoint_codec.h).
const char* const kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE runs (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  workflow TEXT NOT NULL,
  input TEXT NOT NULL,
  config TEXT NOT NULL,
  state TEXT NOT NULL,
  callbacks TEXT NOT NULL,
  error TEXT NOT NULL,
  parent_run_id TEXT NOT NULL,
  parent_node TEXT NOT NULL,
  idempotency_key TEXT UNIQUE,           -- NULL when the run has none
  forked_from_run_id TEXT NOT NULL,
  forked_from_checkpoint_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  ended_at_ms INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  checkpoint_count INTEGER NOT NULL,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires_at_ms INTEGER NOT NULL DEFAULT 0,
  last_event_seq INTEGER NOT NULL DEFAULT 0  -- seq of the run's newest event
);
CREATE INDEX runs_by_status ON runs (status, pk);
CREATE INDEX runs_by_workflow ON runs (workflow_id, pk);
CREATE INDEX runs_by_parent ON runs (parent_run_id, pk);

CREATE TABLE checkpoints (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,                  -- position in the run, from 0
  parent_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,                    -- 'snapshot' or 'delta'
  base_seq INTEGER NOT NULL,             -- seq of the snapshot the chain starts at
  chain_bytes INTEGER NOT NULL,          -- delta bytes after that snapshot, this row included
  base_bytes INTEGER NOT NULL,           -- bytes of that snapshot
  body TEXT NOT NULL,
  UNIQUE (run_id, seq)
);

CREATE TABLE pending_writes (
  pk INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  superstep INTEGER NOT NULL,
  node_name TEXT NOT NULL,
  result TEXT NOT NULL
);
CREATE INDEX pending_writes_by_run ON pending_writes (run_id, pk);

CREATE TABLE steps (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL,
  node_name TEXT NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  superstep INTEGER NOT NULL,
  item_index INTEGER NOT NULL,
  parent_step_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  child_run_id TEXT NOT NULL,
  input TEXT NOT NULL,
  output TEXT NOT NULL,
  error TEXT NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  ended_at_ms INTEGER NOT NULL
);
CREATE INDEX steps_by_run ON steps (run_id, pk);

CREATE TABLE events (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE workflows (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  definition TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
)sql",
    // 2: workers registered through the API (JSON records), kept across restarts.
    R"sql(
CREATE TABLE worker_records (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  record TEXT NOT NULL
);
)sql",
    // 3: events become a rowid table: appending to a WITHOUT ROWID b-tree
    // rebalances three leaves at each split, several pages per superstep, where
    // a rowid table's append adds one. An engine "values" event written with its
    // checkpoint leaves the state out and names that checkpoint instead (see
    // list_events); state_checkpoint_id is '' otherwise.
    R"sql(
CREATE TABLE events_v3 (
  pk INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  state_checkpoint_id TEXT NOT NULL DEFAULT '',
  UNIQUE (run_id, seq)
);
INSERT INTO events_v3 (run_id, seq, kind, data, created_at_ms)
  SELECT run_id, seq, kind, data, created_at_ms FROM events ORDER BY run_id, seq;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
)sql",
    // 4: events, checkpoints and steps are found through their run's `pk`
    // (run_pk) instead of its id. Run ids are random UUIDs, so an index on
    // (run_id, ...) puts the rows of the runs in flight on as many scattered
    // pages, each rewritten into the log at every commit (half of all pages
    // written under load). The pks of the runs in flight are consecutive:
    // their index entries share a few pages at the index's end. The tables
    // are rebuilt (a UNIQUE constraint's index cannot be dropped); run_id
    // stays as data.
    R"sql(
CREATE TABLE events_v4 (
  pk INTEGER PRIMARY KEY,
  run_pk INTEGER NOT NULL,
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  state_checkpoint_id TEXT NOT NULL DEFAULT '',
  UNIQUE (run_pk, seq)
);
INSERT INTO events_v4 (pk, run_pk, run_id, seq, kind, data, created_at_ms, state_checkpoint_id)
  SELECT e.pk, COALESCE((SELECT r.pk FROM runs r WHERE r.id = e.run_id), 0), e.run_id, e.seq, e.kind,
         e.data, e.created_at_ms, e.state_checkpoint_id FROM events e ORDER BY e.pk;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;

CREATE TABLE checkpoints_v4 (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  run_pk INTEGER NOT NULL,
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  parent_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  base_seq INTEGER NOT NULL,
  chain_bytes INTEGER NOT NULL,
  base_bytes INTEGER NOT NULL,
  body TEXT NOT NULL,
  UNIQUE (run_pk, seq)
);
INSERT INTO checkpoints_v4 (pk, id, run_pk, run_id, seq, parent_id, step_id, version, created_at_ms, kind,
                            base_seq, chain_bytes, base_bytes, body)
  SELECT c.pk, c.id, COALESCE((SELECT r.pk FROM runs r WHERE r.id = c.run_id), 0), c.run_id, c.seq,
         c.parent_id, c.step_id, c.version, c.created_at_ms, c.kind, c.base_seq, c.chain_bytes,
         c.base_bytes, c.body FROM checkpoints c ORDER BY c.pk;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v4 RENAME TO checkpoints;

CREATE TABLE steps_v4 (
  pk INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  run_pk INTEGER NOT NULL,
  run_id TEXT NOT NULL,
  node_name TEXT NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  superstep INTEGER NOT NULL,
  item_index INTEGER NOT NULL,
  parent_step_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  child_run_id TEXT NOT NULL,
  input TEXT NOT NULL,
  output TEXT NOT NULL,
  error TEXT NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  ended_at_ms INTEGER NOT NULL
);
INSERT INTO steps_v4 (pk, id, run_pk, run_id, node_name, type, status, attempt, max_attempts, superstep,
                      item_index, parent_step_id, worker_id, child_run_id, input, output, error,
                      input_tokens, output_tokens, created_at_ms, started_at_ms, ended_at_ms)
  SELECT s.pk, s.id, COALESCE((SELECT r.pk FROM runs r WHERE r.id = s.run_id), 0), s.run_id, s.node_name,
         s.type, s.status, s.attempt, s.max_attempts, s.superstep, s.item_index, s.parent_step_id,
         s.worker_id, s.child_run_id, s.input, s.output, s.error, s.input_tokens, s.output_tokens,
         s.created_at_ms, s.started_at_ms, s.ended_at_ms FROM steps s ORDER BY s.pk;
DROP TABLE steps;
ALTER TABLE steps_v4 RENAME TO steps;
CREATE INDEX steps_by_run ON steps (run_pk, pk);
)sql",
    // 5: how often a run was resumed after a crash without progress since
    // (RunRecord::recoveries).
    R"sql(
ALTER TABLE runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;
)sql",
    // 6: the store keeps the host's data without knowing what it is: worker
    // records become the `workers` collection of host_records, and a run's
    // callbacks (an array or null) become {"callbacks": [...]} in host_data.
    R"sql(
CREATE TABLE host_records (
  pk INTEGER PRIMARY KEY,
  collection TEXT NOT NULL,
  id TEXT NOT NULL,
  record TEXT NOT NULL,
  UNIQUE (collection, id)
);
INSERT INTO host_records (collection, id, record)
  SELECT 'workers', id, record FROM worker_records ORDER BY pk;
DROP TABLE worker_records;
ALTER TABLE runs RENAME COLUMN callbacks TO host_data;
UPDATE runs SET host_data = '{"callbacks":' || host_data || '}' WHERE host_data NOT IN ('null', '');
)sql",
    // 7: what a reader needs, stored once (issue #25).
    // - A run's workflow definition moves to `definitions`, one row per
    //   distinct text (sqlite_definitions.h), named by runs.definition_pk;
    //   runs.workflow stays, as ''.
    // - Checkpoints lose run_id (their run_pk names the run), and parent_id
    //   is NULL when it is the id of the run's row before (seq - 1). Ids
    //   that are UUIDs are stored as 16-byte blobs (compact_id), here and in
    //   the unique index on them. Steps likewise, and their run_id is read
    //   from the run's row (steps.run_id holds '').
    // - Events are clustered on (run_pk, seq), without run_id and without a
    //   rowid and its separate unique index. An event whose data is rebuilt
    //   from a checkpoint of its run names it by seq (checkpoint_seq) instead
    //   of by id; `form` says how (EventForm in sqlite_rows.h). The engine's
    //   kinds are stored as small integers (kKindCodes in sqlite_rows.cc);
    //   rows written before keep their kind's name, which reads the same.
    R"sql(
CREATE TABLE definitions (
  pk INTEGER PRIMARY KEY,
  hash INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX definitions_by_hash ON definitions (hash);
INSERT INTO definitions (hash, body)
  SELECT orch_definition_hash(workflow), workflow FROM runs GROUP BY workflow ORDER BY MIN(pk);
ALTER TABLE runs ADD COLUMN definition_pk INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET definition_pk = (SELECT d.pk FROM definitions d
                                 WHERE d.hash = orch_definition_hash(runs.workflow) AND d.body = runs.workflow),
                workflow = '';
CREATE INDEX runs_by_definition ON runs (definition_pk);

CREATE TABLE checkpoints_v7 (
  pk INTEGER PRIMARY KEY,
  id NOT NULL UNIQUE,                    -- no type: a UUID's 16 bytes, or text (compact_id)
  run_pk INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  parent_id,                             -- as id; NULL: the id of the run's row at seq - 1
  step_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  base_seq INTEGER NOT NULL,
  chain_bytes INTEGER NOT NULL,
  base_bytes INTEGER NOT NULL,
  body TEXT NOT NULL,
  UNIQUE (run_pk, seq)
);
INSERT INTO checkpoints_v7 (pk, id, run_pk, seq, parent_id, step_id, version, created_at_ms, kind, base_seq,
                            chain_bytes, base_bytes, body)
  SELECT pk, orch_compact_id(id), run_pk, seq, orch_compact_id(parent_id), step_id, version, created_at_ms, kind,
         base_seq, chain_bytes, base_bytes, body FROM checkpoints ORDER BY pk;

CREATE TABLE events_v7 (
  run_pk INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  kind NOT NULL,                         -- no type: a code (integer) or a name (text), kept as given
  data TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  form INTEGER NOT NULL DEFAULT 0,       -- EventForm
  checkpoint_seq INTEGER,                -- the checkpoint the data is rebuilt from (form > 0)
  PRIMARY KEY (run_pk, seq)
) WITHOUT ROWID;
INSERT INTO events_v7 (run_pk, seq, kind, data, created_at_ms, form, checkpoint_seq)
  SELECT e.run_pk, e.seq, e.kind, e.data, e.created_at_ms, CASE WHEN e.state_checkpoint_id = '' THEN 0 ELSE 1 END,
         CASE WHEN e.state_checkpoint_id = '' THEN NULL
              ELSE (SELECT c.seq FROM checkpoints c WHERE c.id = e.state_checkpoint_id) END
  FROM events e WHERE e.run_pk IN (SELECT pk FROM runs) ORDER BY e.run_pk, e.seq;
DROP TABLE events;
ALTER TABLE events_v7 RENAME TO events;
UPDATE steps SET id = orch_compact_id(id), run_id = '';
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v7 RENAME TO checkpoints;
)sql",
    // 8: fencing (Store::claim_run_lease): the lease's epoch, bumped by every
    // claim that moves the run to another owner. Runs already leased count
    // as their first epoch.
    R"sql(
ALTER TABLE runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET lease_epoch = 1 WHERE lease_owner <> '';
)sql",
    // 9: event data and checkpoint bodies are packed values
    // (sqlite_packed_value.h), BLOBs: in JSON text the engine's events spent
    // most of their bytes on key names and UUIDs in 36 characters, and deltas
    // on quoting their paths. Rows written before are packed here; one whose
    // text does not parse stays as it was (and reads as before).
    // An event's time is stored relative to its run's first event (seq 1),
    // which keeps its own: one or two bytes instead of six (event_time_base).
    // Steps likewise (input, output, status, times: see sqlite_rows.h).
    R"sql(
UPDATE events SET data = orch_pack_json(data) WHERE form IN (0, 1) AND typeof(data) = 'text';
UPDATE events SET created_at_ms = created_at_ms - COALESCE((SELECT f.created_at_ms FROM events f
                                                            WHERE f.run_pk = events.run_pk AND f.seq = 1), 0)
  WHERE seq > 1;
UPDATE checkpoints SET body = orch_pack_json(body) WHERE typeof(body) = 'text';
-- Steps: input and output packed, the status a digit, start and end times
-- relative to the creation (sqlite_rows.cc, relative_time).
UPDATE steps SET input = orch_pack_json(input), output = orch_pack_json(output),
  status = CASE status WHEN 'pending' THEN '1' WHEN 'ready' THEN '2' WHEN 'running' THEN '3' WHEN 'completed' THEN '4'
                       WHEN 'failed' THEN '5' WHEN 'skipped' THEN '6' WHEN 'interrupted' THEN '7' ELSE status END,
  started_at_ms = CASE WHEN started_at_ms = 0 THEN 0 WHEN started_at_ms >= created_at_ms
                       THEN started_at_ms - created_at_ms + 1 ELSE started_at_ms - created_at_ms END,
  ended_at_ms = CASE WHEN ended_at_ms = 0 THEN 0 WHEN ended_at_ms >= created_at_ms
                     THEN ended_at_ms - created_at_ms + 1 ELSE ended_at_ms - created_at_ms END;
)sql",
    // 10: (issue #25) the events of one write_batch share a row (form 4,
    // sqlite_rows.h): a row of its own cost an event ~16 bytes besides its
    // data. Packed values name a string met before in the same packing in 2
    // bytes (sqlite_packed_value.h). Event rows written before read as they
    // are; their packed values, checkpoint bodies and steps' input and
    // output are packed again here, gaining those back-references.
    // A checkpoint's kind is one letter, 's' or 'd' (sqlite_store_checkpoints.cc),
    // a step's node type of the workflow language a one-byte BLOB (sqlite_rows.cc).
    R"sql(
UPDATE steps SET type = CASE type WHEN 'task' THEN x'01' WHEN 'agent' THEN x'02' WHEN 'route' THEN x'03'
                                  WHEN 'interrupt' THEN x'04' WHEN 'send' THEN x'05' WHEN 'transform' THEN x'06'
                                  WHEN 'subgraph' THEN x'07' ELSE type END;
UPDATE checkpoints SET kind = CASE kind WHEN 'snapshot' THEN 's' WHEN 'delta' THEN 'd' ELSE kind END;
UPDATE events SET data = orch_repack(data) WHERE typeof(data) = 'blob';
UPDATE checkpoints SET body = orch_repack(body) WHERE typeof(body) = 'blob';
UPDATE steps SET input = orch_repack(input), output = orch_repack(output);
)sql",
};

constexpr int kMigrationCount = static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));

int pragma_int(Connection& conn, const char* pragma) {
  Query q(conn, std::string("PRAGMA ") + pragma);
  return q->executeStep() ? q->getColumn(0).getInt() : 0;
}

}  // namespace

int latest_schema_version() { return kMigrationCount; }

void configure_connection(Connection& conn, int page_size) {
  // Takes effect only in a file that has no table yet (one this store
  // creates); an existing file keeps the page size it was made with.
  conn.db().exec("PRAGMA page_size = " + std::to_string(page_size));
  // NORMAL is durable against process crashes in WAL mode; commits that ask
  // for sync_to_disk switch to FULL for their transaction.
  conn.db().exec("PRAGMA synchronous = NORMAL");
  // Statement journals (savepoints) stay in memory instead of a temp file.
  conn.db().exec("PRAGMA temp_store = MEMORY");
}

Status migrate_schema(Connection& conn, bool in_memory) {
  try {
    // WAL lets readers run beside the writer. It is stored in the file, and
    // cannot be switched inside a transaction, so it comes first.
    if (!in_memory) conn.db().exec("PRAGMA journal_mode = WAL");

    std::mutex local;  // the store's writer mutex is not needed yet: nobody else has the store
    WriteTransaction txn(conn, local);
    const int app_id = pragma_int(conn, "application_id");
    const int version = pragma_int(conn, "user_version");
    if (app_id != 0 && app_id != kApplicationId) {
      return Status::failed_precondition(
          "the database belongs to another application (application_id " + std::to_string(app_id) +
          ")");
    }
    if (version > kMigrationCount) {
      return Status::failed_precondition("the database has schema version " +
                                         std::to_string(version) +
                                         ", newer than this orch understands (" +
                                         std::to_string(kMigrationCount) + "); upgrade orch");
    }
    if (version == kMigrationCount && app_id == kApplicationId) return Status();
    register_definition_hash(conn);  // migration 7 hashes the runs' definitions
    register_compact_id(conn);       // and compacts the checkpoints' ids
    register_packed_value_functions(conn);  // migrations 9 and 10 pack event data and checkpoint bodies
    for (int next = version + 1; next <= kMigrationCount; ++next)
      conn.db().exec(kMigrations[next - 1]);
    conn.db().exec("PRAGMA application_id = " + std::to_string(kApplicationId));
    conn.db().exec("PRAGMA user_version = " + std::to_string(kMigrationCount));
    txn.commit();
    return Status();
  } catch (const SQLite::Exception& e) {
    return status_from_exception(e, "migrating the database schema");
  }
}

}  // namespace orch::sqlite
