// SPDX-License-Identifier: MIT
//
// Row <-> record mapping of the SQLite store: the column lists, the SQL built
// from them, and binding/reading one record. A read that meets a malformed
// row (bad JSON, unknown status) returns Internal naming the row and column,
// never crashes.
#pragma once

#include <SQLiteCpp/Statement.h>

#include <string>

#include "orch/status.h"
#include "orch/store.h"

namespace orch::sqlite {

// A table's record columns, in binding order. The first is the record's key.
struct TableColumns {
  const char* table;
  const char* const* columns;
  int count;
  // A table whose rows are found through their run's pk (see migration 4):
  // insert_sql() also sets run_pk, from parameter count + 1, which the
  // caller binds (the writer has just read or updated the run's row).
  bool keyed_by_run_pk = false;

  // "c1, c2, ..." for SELECT.
  std::string select_list() const;
  // "INSERT INTO t (c1, ...) VALUES (?1, ...)" (and run_pk, see above).
  std::string insert_sql() const;
  // "UPDATE t SET c2 = ?2, ... WHERE c1 = ?1".
  std::string update_sql() const;
  // "INSERT ... ON CONFLICT (c1) DO UPDATE SET c2 = excluded.c2, ...": an
  // upsert that keeps the row's pk, so listing order stays first-write order.
  std::string upsert_sql() const;
};

extern const TableColumns kRunColumns;
extern const TableColumns kStepColumns;
extern const TableColumns kEventColumns;
extern const TableColumns kPendingWriteColumns;
extern const TableColumns kWorkflowColumns;

// bind_* binds parameters ?1..?count in column order; read_* reads the columns
// of the current row, starting at column 0, in the same order. A record's
// strings are bound without SQLite copying them: the record must stay alive
// and unchanged until the statement has been stepped.
void bind_run(SQLite::Statement& stmt, const RunRecord& run);
// What a checkpoint commit changes in a run's row: status, error, timestamps,
// token counts, checkpoint count. The workflow, input and config (often the
// bulk of the row) are written by create_run and update_run only. When the
// run's state is the checkpoint's (`state_is_checkpoints`, as it is for the
// engine), the row says '' and read_run returns a null state, which the store
// fills from the latest checkpoint: rewriting a growing state into the run
// row at every superstep doubled the cost of a superstep.
// The status is indexed, so it is written by kRunStatusSql (same parameters),
// which leaves the row alone when the status has not changed: rewriting an
// index entry with itself still dirties its page, a page per superstep.
// `new_events` is added to the run's last_event_seq in the same write: events
// that go out with the checkpoint take their seqs without a second rewrite of
// the row (an UPDATE rewrites the whole record, its overflow pages included);
// the statement returns the new last_event_seq and the run's pk (no row: no
// such run).
extern const char* const kRunProgressSql;
extern const char* const kRunStatusSql;
void bind_run_progress(SQLite::Statement& stmt, const RunRecord& run, bool state_is_checkpoints,
                       int64_t new_events = 0);
Result<RunRecord> read_run(const SQLite::Statement& stmt);

void bind_step(SQLite::Statement& stmt, const StepRecord& step);
Result<StepRecord> read_step(const SQLite::Statement& stmt);

// `data_json`, when given, is stored (as is) instead of the event's own data.
void bind_event(SQLite::Statement& stmt, const EventRecord& event, const std::string* data_json = nullptr);
// Marks an event bound by bind_event(stmt, event, &data_without_state) as
// stored without the last key of its data, "state", which is that of
// checkpoint `checkpoint_id` (written in the same transaction): an engine
// "values" event carries the whole state, and storing it twice per superstep
// was a quarter of a superstep's pages.
void bind_event_state_ref(SQLite::Statement& stmt, const std::string& checkpoint_id);
// `state_checkpoint_id` gets the checkpoint whose state the caller must add
// back as the data's "state", or ''.
Result<EventRecord> read_event(const SQLite::Statement& stmt, std::string* state_checkpoint_id);

void bind_pending_write(SQLite::Statement& stmt, const PendingWrite& write);
Result<PendingWrite> read_pending_write(const SQLite::Statement& stmt);

void bind_workflow(SQLite::Statement& stmt, const WorkflowRecord& workflow);
Result<WorkflowRecord> read_workflow(const SQLite::Statement& stmt);

// The JSON in column `index`; Internal naming `what` when it does not parse.
Result<Value> read_json_column(const SQLite::Statement& stmt, int index, const std::string& what);

}  // namespace orch::sqlite
