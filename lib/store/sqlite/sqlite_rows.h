// SPDX-License-Identifier: MIT
//
// Row <-> record mapping of the SQLite store: the column lists, the SQL built
// from them, and binding/reading one record. A read that meets a malformed
// row (bad JSON, unknown status) returns Internal naming the row and column,
// never crashes.
#pragma once

#include <SQLiteCpp/Statement.h>

#include <string>
#include <vector>

#include "orch/status.h"
#include "orch/store.h"
#include "store/sqlite/sqlite_connection.h"

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
extern const TableColumns kPendingWriteColumns;
extern const TableColumns kWorkflowColumns;

// Runs (schema 7): the definition lives in `definitions` (sqlite_definitions.h).
// The select list reads it back in the workflow column's place; the insert
// and update statements take the run's definition_pk as ?23 (after
// bind_run's ?1..?22) and store '' as the run's own workflow.
const std::string& run_select_list();
// Steps (schema 7): a step's run_id is read from its run's row (steps.run_id
// holds ''), and a UUID step id is stored in 16 bytes (bind_id, read_id).
// Since schema 9 input and output are packed values, the status a one-digit
// code, and the start and end times relative to the creation (bind_step);
// since schema 10 a node type of the workflow language a one-byte BLOB.
const std::string& step_select_list();
const std::string& run_insert_sql();
const std::string& run_update_sql();

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
// The row is found by its pk, read first with read_run_counters, which also
// gives the status and last_event_seq it holds. The status is indexed, so it
// is written (kRunStatusSql: ?1 pk, ?2 status) only when it changed:
// rewriting an index entry with itself still dirties its page, a page per
// superstep. `last_event_seq` is written in the same statement: events that go
// out with the checkpoint take their seqs without a second rewrite of the row
// (an UPDATE rewrites the whole record, its overflow pages included).
// No RETURNING clause here: SQLite runs one through a temporary table, which
// cost more than the update itself (and a second read of the row).
extern const char* const kRunProgressSql;
extern const char* const kRunStatusSql;
void bind_run_progress(SQLite::Statement& stmt, const RunRecord& run, int64_t pk, bool state_is_checkpoints,
                       int64_t last_event_seq);
// What the writes of a batch need of a run's row before they change it.
struct RunCounters {
  int64_t pk = 0;
  int64_t last_event_seq = 0;
  std::string status;
  std::string lease_owner;  // for fencing, read in the same statement
  int64_t lease_epoch = 0;
};
// NotFound when there is no run `run_id`.
Result<RunCounters> read_run_counters(Connection& conn, const std::string& run_id);
Result<RunRecord> read_run(const SQLite::Statement& stmt);

void bind_step(SQLite::Statement& stmt, const StepRecord& step);
Result<StepRecord> read_step(const SQLite::Statement& stmt);

// How an event row holds its data (events.form). An engine event written with
// its superstep's checkpoint may repeat what that checkpoint holds: the
// "values" event carries the whole state (storing it twice per superstep was
// a quarter of a superstep's pages), "checkpoint.created" only the
// checkpoint's id, version and step. Such a row names the checkpoint by its
// seq in the run (checkpoint_seq) and stores only the rest.
enum class EventForm : int {
  kWhole = 0,              // data is the event's data
  kWithoutState = 1,       // data lacks its last key, "state": the checkpoint's state
  kCheckpointCreated = 2,  // data is {"checkpoint_id", "version", "step_id"} of the checkpoint; '' stored
  kValues = 3,             // data is {"step": its step_id, "state": its state}; '' stored
};

// Since schema 9 the data is a packed value (sqlite_packed_value.h), bound
// as a BLOB; rows written before hold JSON text, which reads the same.
struct StoredEvent {
  std::string data;     // packed (or JSON text), or '' for the forms that store none
  bool packed = false;  // data is a packed value
  EventForm form = EventForm::kWhole;
};

// How `event` is stored when `checkpoint` (null: none) is written in the same
// transaction. Only exact shapes (key order, types) get a derived form, so
// reading back gives the same JSON text.
StoredEvent encode_event(const EventRecord& event, const Checkpoint* checkpoint);

// The code events.kind holds for `kind`, 0 for a kind stored by name.
int event_kind_code_for_testing(const std::string& kind);

// Since schema 10 the events of one write_batch (two or more) share one row,
// at the first one's seq: its form column is kBatchRowForm, its kind column
// the number of events, its created_at_ms the first one's (as above), its
// checkpoint_seq the batch's checkpoint when one of them is derived from it
// (NULL otherwise), and its data a blob of the events one after another:
//   kind    byte: a code of kKindCodes, or 0 and then a varint length and
//           the kind's name
//   flags   byte: bits 0-1 the event's EventForm, bit 2 a time follows
//   time    zig-zag varint: ms after the row's first event (absent: 0)
//   data    the packed data for the forms that store some (kWhole,
//           kWithoutState); all the events' data one ValuePacker packing,
//           so a step id or node name repeated in a superstep is 2 bytes.
// Each row of its own costs ~16 bytes besides its data (cell, header, key),
// an event in a batch row ~3.
constexpr int kBatchRowForm = 4;
// The blob of `events` as one row, or '' when they are stored a row each
// (fewer than two, or data nested too deep to pack). `checkpoint`: as for
// encode_event; *derived says whether an event is derived from it.
std::string encode_event_batch(const std::vector<EventRecord>& events, const Checkpoint* checkpoint, bool* derived);
// INSERT of a batch row: ?1 run_pk, ?2 first seq, ?3 count, ?4 blob,
// ?5 created_at_ms (as bind_event), ?6 kBatchRowForm, ?7 checkpoint_seq or NULL.
void bind_event_batch(SQLite::Statement& stmt, int64_t run_pk, int64_t first_seq, const std::vector<EventRecord>& events,
                      const std::string& blob, bool derived, int64_t checkpoint_seq, int64_t time_base);

// One event read from a row, with how its data is completed (complete_event).
struct RowEvent {
  EventRecord event;
  EventForm form = EventForm::kWhole;
  int64_t checkpoint_seq = 0;
};
// The events of the current row (kEventSelectList): one, or a batch row's.
// Appends them to *out in seq order.
Status read_event_row(const SQLite::Statement& stmt, const std::string& run_id, int64_t time_base,
                      std::vector<RowEvent>* out);

// INSERT of an event row: ?1 run_pk, ?2 seq, ?3 kind, ?4 data,
// ?5 created_at_ms, ?6 form, ?7 checkpoint_seq (NULL for kWhole).
extern const char* const kEventInsertSql;
// The columns read_event reads, in order.
extern const char* const kEventSelectList;
// Since schema 9 an event's created_at_ms is stored as the milliseconds since
// the run's first event (seq 1, which holds its own time): a timestamp takes
// 6 bytes, the time since the run's start one or two. This is that first
// event's time, 0 when the run has none.
int64_t event_time_base(Connection& conn, int64_t run_pk);
// `stored` and `event` must outlive the statement's execution. `time_base`:
// event_time_base(), or the event's own time when seq is 1.
void bind_event(SQLite::Statement& stmt, int64_t run_pk, int64_t seq, const EventRecord& event,
                const StoredEvent& stored, int64_t checkpoint_seq, int64_t time_base);
// An event of run `run_id` (whose event_time_base() is `time_base`); for a
// form other than kWhole, `checkpoint_seq` names the checkpoint
// complete_event() needs.
Result<EventRecord> read_event(const SQLite::Statement& stmt, const std::string& run_id, int64_t time_base,
                               EventForm* form, int64_t* checkpoint_seq);
// Gives an event read in `form` its whole data from `checkpoint`.
void complete_event(EventRecord* event, EventForm form, const Checkpoint& checkpoint);

void bind_pending_write(SQLite::Statement& stmt, const PendingWrite& write);
Result<PendingWrite> read_pending_write(const SQLite::Statement& stmt);

void bind_workflow(SQLite::Statement& stmt, const WorkflowRecord& workflow);
Result<WorkflowRecord> read_workflow(const SQLite::Statement& stmt);

// An event's data (or a step's input or output) in column `index`: a packed
// value (BLOB) or JSON text.
Result<Value> read_event_data(const SQLite::Statement& stmt, int index, const std::string& what);
// Binds an event's stored data at `index` (a BLOB when packed), without copying.
void bind_event_data(SQLite::Statement& stmt, int index, const StoredEvent& stored);

// The JSON in column `index`; Internal naming `what` when it does not parse.
Result<Value> read_json_column(const SQLite::Statement& stmt, int index, const std::string& what);

}  // namespace orch::sqlite
