// SPDX-License-Identifier: MIT
// Schema migrations of the PostgreSQL store (see pg_schema.h).
#include "store/postgres/pg_schema.h"

namespace orch::postgres {
namespace {

// "orch" in ASCII: the advisory lock's first key (the second is the schema's).
constexpr int64_t kLockKey = 0x6f726368;

// Migration N (1-based) takes the schema from version N-1 to N. Append only:
// a released migration never changes, or databases that already ran it
// diverge.
//
// The layout follows the SQLite store's: a `pk` per table gives listing
// order (runs newest first, steps and workflows in first-write order); rows
// a run owns carry its pk (run_pk) and go with it (ON DELETE CASCADE up to
// schema 4; since 5, delete_run deletes them, without foreign keys). JSON
// is stored as text, byte for byte as orch wrote it (jsonb would reorder
// keys and turn 1.0 into 1). Checkpoint rows hold a snapshot or a delta
// (store/checkpoint_codec.h).
const char* const kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE runs (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text NOT NULL UNIQUE,
  status text NOT NULL,
  workflow_id text NOT NULL,
  workflow text NOT NULL,
  input text NOT NULL,
  config text NOT NULL,
  state text NOT NULL,                   -- '': the latest checkpoint's state
  host_data text NOT NULL,
  error text NOT NULL,
  parent_run_id text NOT NULL,
  parent_node text NOT NULL,
  idempotency_key text UNIQUE,           -- NULL when the run has none
  forked_from_run_id text NOT NULL,
  forked_from_checkpoint_id text NOT NULL,
  created_at_ms bigint NOT NULL,
  updated_at_ms bigint NOT NULL,
  started_at_ms bigint NOT NULL,
  ended_at_ms bigint NOT NULL,
  input_tokens bigint NOT NULL,
  output_tokens bigint NOT NULL,
  checkpoint_count bigint NOT NULL,
  recoveries bigint NOT NULL DEFAULT 0,
  lease_owner text NOT NULL DEFAULT '',
  lease_expires_at_ms bigint NOT NULL DEFAULT 0,  -- on the database's clock
  last_event_seq bigint NOT NULL DEFAULT 0        -- seq of the run's newest event
);
CREATE INDEX runs_by_status ON runs (status, pk);
CREATE INDEX runs_by_workflow ON runs (workflow_id, pk);
CREATE INDEX runs_by_parent ON runs (parent_run_id, pk);

CREATE TABLE checkpoints (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text NOT NULL UNIQUE,
  run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
  run_id text NOT NULL,
  seq bigint NOT NULL,                   -- position in the run, from 0
  parent_id text NOT NULL,
  step_id text NOT NULL,
  version bigint NOT NULL,
  created_at_ms bigint NOT NULL,
  kind text NOT NULL,                    -- 'snapshot' or 'delta'
  base_seq bigint NOT NULL,              -- seq of the snapshot the chain starts at
  chain_bytes bigint NOT NULL,           -- delta bytes after that snapshot, this row included
  base_bytes bigint NOT NULL,            -- bytes of that snapshot
  body text NOT NULL,
  UNIQUE (run_pk, seq)
);

CREATE TABLE pending_writes (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
  run_id text NOT NULL,
  superstep bigint NOT NULL,
  node_name text NOT NULL,
  result text NOT NULL
);
CREATE INDEX pending_writes_by_run ON pending_writes (run_pk, pk);

CREATE TABLE steps (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text NOT NULL UNIQUE,
  run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
  run_id text NOT NULL,
  node_name text NOT NULL,
  type text NOT NULL,
  status text NOT NULL,
  attempt bigint NOT NULL,
  max_attempts bigint NOT NULL,
  superstep bigint NOT NULL,
  item_index bigint NOT NULL,
  parent_step_id text NOT NULL,
  worker_id text NOT NULL,
  child_run_id text NOT NULL,
  input text NOT NULL,
  output text NOT NULL,
  error text NOT NULL,
  input_tokens bigint NOT NULL,
  output_tokens bigint NOT NULL,
  created_at_ms bigint NOT NULL,
  started_at_ms bigint NOT NULL,
  ended_at_ms bigint NOT NULL
);
CREATE INDEX steps_by_run ON steps (run_pk, pk);

CREATE TABLE events (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
  run_id text NOT NULL,
  seq bigint NOT NULL,
  kind text NOT NULL,
  data text NOT NULL,
  created_at_ms bigint NOT NULL,
  -- An engine "values" event written with its checkpoint is stored without
  -- the state (data lacks "state") and names that checkpoint instead; ''
  -- otherwise. A growing state stored twice per superstep doubled the bytes.
  state_checkpoint_id text NOT NULL DEFAULT '',
  UNIQUE (run_pk, seq)
);

CREATE TABLE workflows (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text NOT NULL UNIQUE,
  name text NOT NULL,
  version bigint NOT NULL,
  definition text NOT NULL,
  created_at_ms bigint NOT NULL,
  updated_at_ms bigint NOT NULL
);

CREATE TABLE host_records (
  pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  collection text NOT NULL,
  id text NOT NULL,
  record text NOT NULL,
  UNIQUE (collection, id)
);

-- Locks the run's row until the transaction ends and returns its pk; raises
-- OR404 when there is no such run. Writes that must see the run first (a
-- superstep's batch, sent as one pipeline) start with it: a missing run then
-- aborts the whole pipeline instead of writing half of it.
-- With `expected_checkpoint` (not NULL), also raises OR409 unless the run's
-- latest checkpoint is that one ('': it has none): a checkpoint delta encoded
-- against the document this instance remembers must follow that very
-- checkpoint.
CREATE FUNCTION orch_lock_run(wanted text, expected_checkpoint text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  found bigint;
  latest text;
BEGIN
  SELECT pk INTO found FROM runs WHERE id = wanted FOR UPDATE;
  IF found IS NULL THEN
    RAISE EXCEPTION 'run % not found', wanted USING ERRCODE = 'OR404';
  END IF;
  IF expected_checkpoint IS NOT NULL THEN
    SELECT c.id INTO latest FROM checkpoints c WHERE c.run_pk = found ORDER BY c.seq DESC LIMIT 1;
    IF COALESCE(latest, '') <> expected_checkpoint THEN
      RAISE EXCEPTION 'the latest checkpoint of run % is %, not %', wanted, COALESCE(latest, 'none'),
        expected_checkpoint USING ERRCODE = 'OR409';
    END IF;
  END IF;
  RETURN found;
END $$;
)sql",
    // 2: fencing (Store::claim_run_lease): the lease's epoch, bumped by every
    // claim that moves the run to another owner, and the lock a fenced
    // batch opens with, which refuses (OR410) unless the writer still holds
    // the run at its epoch. Runs already leased count as their first epoch.
    R"sql(
ALTER TABLE runs ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0;
UPDATE runs SET lease_epoch = 1 WHERE lease_owner <> '';
-- The takeover loop's query (running top-level runs by lease expiry) and
-- renewal (one owner's runs) read only these.
CREATE INDEX runs_by_lease_expiry ON runs (lease_expires_at_ms) WHERE status = 'running' AND parent_run_id = '';
CREATE INDEX runs_by_lease_owner ON runs (lease_owner) WHERE lease_owner <> '';

-- Store::claim_singleton: work one instance does for all (retention sweep).
-- A lease row rather than pg_try_advisory_lock: a session-level advisory
-- lock belongs to one connection, and the store's calls take any pooled one.
CREATE TABLE singletons (
  name text PRIMARY KEY,
  owner text NOT NULL,
  expires_at_ms bigint NOT NULL          -- on the database's clock
);

-- orch_lock_run, for a writer that must still hold the run's lease at
-- `epoch`: the check and the row lock are one step, so no claim can slip
-- in between them and the transaction's writes.
CREATE FUNCTION orch_lock_run_fenced(wanted text, writer text, epoch bigint, expected_checkpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  found bigint;
  held_by text;
  held_at bigint;
BEGIN
  SELECT pk, lease_owner, lease_epoch INTO found, held_by, held_at FROM runs WHERE id = wanted FOR UPDATE;
  IF found IS NULL THEN
    RAISE EXCEPTION 'run % not found', wanted USING ERRCODE = 'OR404';
  END IF;
  IF held_by <> writer OR held_at <> epoch THEN
    RAISE EXCEPTION 'run % is held by ''%'' at epoch %, not by ''%'' at epoch %', wanted, held_by, held_at, writer,
      epoch USING ERRCODE = 'OR410';
  END IF;
  RETURN orch_lock_run(wanted, expected_checkpoint);
END $$;
)sql",
    // 3: changes are announced (PostgresStore::watch_changes), so that an
    // instance's SSE streams follow runs another instance executes and its
    // workers registered elsewhere are known to all. Channel orch_changes,
    // payload "<schema> e <run id>" (one per run per inserting statement) or
    // "<schema> h <collection>", sent at commit. A key too long for a
    // notification's payload is not announced (readers look anyway).
    R"sql(
CREATE FUNCTION orch_announce_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('orch_changes', TG_TABLE_SCHEMA || ' e ' || a.run_id)
    FROM (SELECT DISTINCT run_id FROM appended WHERE octet_length(run_id) < 7000) a;
  RETURN NULL;
END $$;
CREATE TRIGGER events_announce AFTER INSERT ON events
  REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION orch_announce_events();
CREATE FUNCTION orch_announce_host_records() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  collection text := CASE WHEN TG_OP = 'DELETE' THEN OLD.collection ELSE NEW.collection END;
BEGIN
  IF octet_length(collection) < 7000 THEN
    PERFORM pg_notify('orch_changes', TG_TABLE_SCHEMA || ' h ' || collection);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER host_records_announce AFTER INSERT OR UPDATE OR DELETE ON host_records
  FOR EACH ROW EXECUTE FUNCTION orch_announce_host_records();
)sql",
    // 4: cheaper per superstep (issue #21). Events are announced by the
    // statement that appends them (pg_rows.cc: event_append_sql), from the run
    // row it updates anyway: the statement trigger of migration 3 cost a
    // transition table and a query per insert, ~14% of the server's time.
    // The fenced lock reads the run's lease in the query that locks its row,
    // instead of locking it twice through orch_lock_run. Its checkpoint check
    // stays a query of its own, run after the lock: it must see a checkpoint
    // the previous holder of the lock committed.
    R"sql(
DROP TRIGGER events_announce ON events;
DROP FUNCTION orch_announce_events();
CREATE OR REPLACE FUNCTION orch_lock_run_fenced(wanted text, writer text, epoch bigint, expected_checkpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  found bigint;
  held_by text;
  held_at bigint;
  latest text;
BEGIN
  SELECT pk, lease_owner, lease_epoch INTO found, held_by, held_at FROM runs WHERE id = wanted FOR UPDATE;
  IF found IS NULL THEN
    RAISE EXCEPTION 'run % not found', wanted USING ERRCODE = 'OR404';
  END IF;
  IF held_by <> writer OR held_at <> epoch THEN
    RAISE EXCEPTION 'run % is held by ''%'' at epoch %, not by ''%'' at epoch %', wanted, held_by, held_at, writer,
      epoch USING ERRCODE = 'OR410';
  END IF;
  IF expected_checkpoint IS NOT NULL THEN
    SELECT c.id INTO latest FROM checkpoints c WHERE c.run_pk = found ORDER BY c.seq DESC LIMIT 1;
    IF COALESCE(latest, '') <> expected_checkpoint THEN
      RAISE EXCEPTION 'the latest checkpoint of run % is %, not %', wanted, COALESCE(latest, 'none'),
        expected_checkpoint USING ERRCODE = 'OR409';
    END IF;
  END IF;
  RETURN found;
END $$;
)sql",
    // 5: group commit (issue #21, pg_store_group.cc). The run row names its
    // latest checkpoint, so a superstep's statement can check, in the WHERE
    // of the UPDATE that locks the row, both the writer's lease and that its
    // checkpoint delta follows the run's latest checkpoint: a refused run
    // updates no row and writes nothing, without aborting the transaction
    // it shares with other runs' supersteps. (A subquery on checkpoints
    // there would read the statement's snapshot, taken before the row lock
    // was granted; the row's own columns are re-read at the lock.) Every
    // statement that inserts or deletes checkpoint rows keeps it up to date.
    // The foreign keys of a run's rows go: each row inserted ran a trigger
    // and a query to check its run (~14% of the server's CPU per superstep,
    // with 7 events and 2 steps in one). Every statement that inserts such
    // rows finds the run first and holds its row lock (the UPDATE of a
    // superstep, or FOR KEY SHARE, as the check did), and delete_run deletes
    // them, under the run's lock, before the run.
    R"sql(
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_run_pk_fkey;
ALTER TABLE steps DROP CONSTRAINT steps_run_pk_fkey;
ALTER TABLE events DROP CONSTRAINT events_run_pk_fkey;
ALTER TABLE pending_writes DROP CONSTRAINT pending_writes_run_pk_fkey;
ALTER TABLE runs ADD COLUMN latest_checkpoint_id text NOT NULL DEFAULT '';
UPDATE runs r SET latest_checkpoint_id = c.id
  FROM (SELECT DISTINCT ON (run_pk) run_pk, id FROM checkpoints ORDER BY run_pk, seq DESC) c
  WHERE c.run_pk = r.pk;
)sql",
    // 6: fewer index entries per superstep (issue #21). Events and
    // checkpoints are found by their run and seq (and checkpoints by id),
    // never by their `pk`: its index and identity sequence cost every row
    // (~7 events a superstep). (run_pk, seq) identifies their rows for
    // logical replication instead. A step is written twice (started, then
    // finished), and a run's row at every superstep: room left on their
    // pages lets the new version go next to the old one without new index
    // entries (a HOT update; 35% of step updates were, without it).
    R"sql(
ALTER TABLE events DROP COLUMN pk;
ALTER TABLE events REPLICA IDENTITY USING INDEX events_run_pk_seq_key;
ALTER TABLE checkpoints DROP COLUMN pk;
ALTER TABLE checkpoints REPLICA IDENTITY USING INDEX checkpoints_run_pk_seq_key;
ALTER TABLE steps SET (fillfactor = 50);
ALTER TABLE runs SET (fillfactor = 75);
)sql",
    // 7: a write's events in one row (issue #21): a superstep's ~7 events
    // were as many rows, each a heap tuple, an index entry and their WAL.
    // A row now covers seqs last_seq - event_count + 1 .. last_seq, and
    // (run_pk, last_seq) stays the unique key, so the rows holding the events
    // after a seq are found in the index as before. A row of several events
    // (event_count > 1) holds them in `data` (pg_event_rows.h); the rows
    // written so far each hold one event at its seq, the shape a row of one
    // event keeps: they read on as they are, nothing is rewritten.
    R"sql(
ALTER TABLE events RENAME COLUMN seq TO last_seq;
ALTER TABLE events RENAME CONSTRAINT events_run_pk_seq_key TO events_run_pk_last_seq_key;
ALTER TABLE events ADD COLUMN event_count integer NOT NULL DEFAULT 1;
)sql",
};

constexpr int kMigrationCount = static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));

}  // namespace

int latest_schema_version() { return kMigrationCount; }

Status migrate_schema(Connection& conn, const std::string& schema, int target_version) {
  const int64_t target = target_version < kMigrationCount ? target_version : kMigrationCount;
  const std::string what = "migrating the orch schema";
  ORCH_RETURN_IF_ERROR(conn.exec_script(what, "BEGIN"));
  // Taken before anything is created (the schema itself included) and held
  // to the end of the transaction: instances starting at once queue here.
  ORCH_RETURN_IF_ERROR(
      conn.exec(what, "SELECT pg_advisory_xact_lock($1::integer, hashtext($2))",
                Params().integer(kLockKey).text(schema))
          .status());
  if (!schema.empty()) {
    ORCH_RETURN_IF_ERROR(conn.exec_script(what, "CREATE SCHEMA IF NOT EXISTS " + conn.quote_identifier(schema)));
  }
  ORCH_RETURN_IF_ERROR(conn.exec_script(what, "CREATE TABLE IF NOT EXISTS orch_schema (version integer NOT NULL)"));
  ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec(what, "SELECT version FROM orch_schema"));
  int64_t version = 0;
  if (rows.count() > 0) {
    ORCH_ASSIGN_OR_RETURN(version, rows.integer(0, 0));
  }
  if (version > kMigrationCount) {
    return Status::failed_precondition("the PostgreSQL database has orch schema version " + std::to_string(version) +
                                       ", newer than this orch understands (" + std::to_string(kMigrationCount) +
                                       "); upgrade orch");
  }
  for (int64_t next = version + 1; next <= target; ++next) {
    ORCH_RETURN_IF_ERROR(
        conn.exec_script(what + " to version " + std::to_string(next), kMigrations[next - 1]));
  }
  if (version < target) {
    const std::string set = rows.count() > 0 ? "UPDATE orch_schema SET version = " : "INSERT INTO orch_schema VALUES (";
    ORCH_RETURN_IF_ERROR(conn.exec_script(
        what, set + std::to_string(target) + (rows.count() > 0 ? "" : ")")));
  }
  return conn.exec_script(what, "COMMIT");
}

}  // namespace orch::postgres
