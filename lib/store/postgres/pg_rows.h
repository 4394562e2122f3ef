// SPDX-License-Identifier: MIT
//
// Row <-> record mapping of the PostgreSQL store: the column lists and the
// statements built from them, binding a record's parameters, reading a
// record from a result row. A row that does not read back (malformed JSON,
// an unknown status, a non-integer) is Internal naming the record and
// column, never a crash.
#pragma once

#include <string>
#include <vector>

#include "orch/status.h"
#include "orch/store.h"
#include "store/postgres/pg_connection.h"

namespace orch::postgres {

// A table's record columns, in parameter order; the first is the record's key.
struct TableColumns {
  const char* table;
  const char* const* columns;
  int count;

  // "c1, c2, ..." for SELECT.
  std::string select_list() const;
  // "INSERT INTO t (c1, ...) VALUES ($1, ...)".
  std::string insert_sql() const;
  // "UPDATE t SET c2 = $2, ... WHERE c1 = $1".
  std::string update_sql() const;
};

extern const TableColumns kRunColumns;
extern const TableColumns kStepColumns;
extern const TableColumns kPendingWriteColumns;
extern const TableColumns kWorkflowColumns;

// add_* appends a record's columns to `params` in column order; read_* reads
// them from `row` of `rows`, starting at column `first`. (Events are written
// by event_append_sql below and read by read_event_row, pg_event_rows.h.)
void add_run(Params& params, const RunRecord& run);
Result<RunRecord> read_run(const Rows& rows, int row, int first = 0);
void add_step(Params& params, const StepRecord& step);
Result<StepRecord> read_step(const Rows& rows, int row, int first = 0);
void add_pending_write(Params& params, const PendingWrite& write);
Result<PendingWrite> read_pending_write(const Rows& rows, int row, int first = 0);
void add_workflow(Params& params, const WorkflowRecord& workflow);
Result<WorkflowRecord> read_workflow(const Rows& rows, int row, int first = 0);

// What a checkpoint commit changes in a run's row (store.h: status, error,
// timestamps, token counts, checkpoint count; workflow, input and config
// stay as create_run and update_run wrote them). When the run's state is
// the checkpoint's (`state_is_checkpoints`, as it is for the engine), the
// row says '' and reads fill it from the latest checkpoint, instead of a
// growing state written twice per superstep. Parameters: $1 the run id,
// then the progress fields. "UPDATE runs SET ..." without its WHERE clause,
// for statements that set more.
extern const char* const kRunProgressSetSql;
void add_run_progress(Params& params, const RunRecord& run, bool state_is_checkpoints);

// Statements of the tables a run owns, shared by the single calls and the
// batches. The row goes in only when its run exists (no row: no run).
// pending_write_insert_sql: add_pending_write's parameters.
const std::string& pending_write_insert_sql();
// step_upsert_sql: add_step's parameters; inserts or replaces by step id.
const std::string& step_upsert_sql();
// event_append_sql: event_append_params; appends a run's events at once, in
// one row (pg_event_rows.h), and returns (last_seq, event_count) of the row
// (covered_seqs gives the events' seqs). With the `checkpoint` written in
// the same transaction, an event whose data ends with that checkpoint's very
// state is stored without it, naming the checkpoint (list_events puts the
// state back).
// With `announce`, the statement also announces the run's new events on
// channel orch_changes (pg_change_watch.h), at commit.
const std::string& event_append_sql(bool announce);
Params event_append_params(const std::string& run_id, const std::vector<EventRecord>& events,
                           const Checkpoint* checkpoint = nullptr);
// A checkpoint commit (the run's progress, the checkpoint row, the end of the
// run's pending writes) and the events that go with it, in one statement that
// updates the run's row once: $1..$11 add_run_progress, $12..$22 the
// checkpoint row, $23..$27 add_event_row. Returns the events' row, as
// event_append_sql does.
// `with_step`: steps are upserted too (as step_upsert_sql does, in their
// order; each id at most once), add_step_arrays' parameters following, from
// $28.
// Every checkpoint statement also sets the run's latest_checkpoint_id ($12).
// `conditional` (a group commit of one run; several runs' go in one
// statement, pg_group_statement.h): the run's row is updated, and so
// anything written, only when its latest checkpoint is the one the delta
// follows and the writer holds its lease; three more parameters follow
// (add_checkpoint_condition, from checkpoint_events_condition_param), and a
// refused run returns no rows (a batch written this way has events, so a
// written one returns its row).
constexpr int kCheckpointEventsParams = 27;
const std::string& checkpoint_events_sql(bool announce, bool with_step, bool conditional = false);
int checkpoint_events_condition_param(bool with_step);
// `expected_checkpoint` '' : the run has none. `lease_epoch` 0: unfenced.
void add_checkpoint_condition(Params& params, const std::string& expected_checkpoint, const std::string& lease_owner,
                              int64_t lease_epoch);
// The CTE "steps", upserting steps from arrays $first.. (StepArrays) into
// CTE "run"'s run, in the arrays' order. `by_member`: an array of member
// indexes comes first ($first), and each step goes to the row of "run"
// with that member_index.
std::string steps_cte(int first, bool by_member);
// Steps' columns, one array each in kStepColumns order, appended step by step.
class StepArrays {
 public:
  void add(const StepRecord& step);
  void bind(Params& params) const;

 private:
  std::vector<std::vector<std::string>> texts_;  // by column (the text ones)
  std::vector<std::vector<int64_t>> integers_;   // by column (the bigint ones)
};
void add_step_arrays(Params& params, const std::vector<const StepRecord*>& steps);
// The events' row (encode_event_row), as five parameters: event_count,
// kind, data, created_at_ms, state_checkpoint_id.
void add_event_row(Params& params, const std::vector<EventRecord>& events, const Checkpoint* checkpoint);

// The JSON text in `column`; Internal naming `what` when it does not parse.
Result<Value> read_json(const Rows& rows, int row, int column, const std::string& what);

}  // namespace orch::postgres
