// SPDX-License-Identifier: MIT
// Row <-> record mapping of the PostgreSQL store (see pg_rows.h).
#include "store/postgres/pg_rows.h"

#include <optional>
#include <string_view>

#include "store/postgres/pg_event_rows.h"
#include "store/record_fields.h"

namespace orch::postgres {
namespace {

using internal::field_count;
using internal::step_status_from_name;

// Reads a record's columns in order, keeping the first failure.
class Reader {
 public:
  Reader(const Rows& rows, int row, int first, std::string what)
      : rows_(rows), row_(row), column_(first), what_(std::move(what)) {}
  std::string text() { return rows_.string(row_, column_++); }
  int64_t integer() {
    Result<int64_t> v = rows_.integer(row_, column_++);
    if (!v.ok()) fail(v.status());
    return v.ok() ? *v : 0;
  }
  int small_integer() { return static_cast<int>(integer()); }
  Value json() {
    Result<Value> v = read_json(rows_, row_, column_++, what_);
    if (!v.ok()) fail(v.status());
    return v.ok() ? std::move(v).value() : Value();
  }
  void fail(const Status& s) {
    if (status_.ok()) status_ = Status::internal(what_ + ": " + s.message());
  }
  const Status& status() const { return status_; }

 private:
  const Rows& rows_;
  int row_;
  int column_;
  std::string what_;
  Status status_;
};

// "INSERT INTO t (columns, run_pk) SELECT $1, ..., pk FROM runs WHERE id = $<run>
// FOR KEY SHARE": a row of the run whose id is parameter `run_param`. The
// lock keeps delete_run from deleting the run's rows before this one
// commits (schema 5 has no foreign key doing it).
std::string insert_for_run(const TableColumns& table, int run_param) {
  std::string values;
  for (int i = 1; i <= table.count; ++i) values += "$" + std::to_string(i) + ", ";
  return std::string("INSERT INTO ") + table.table + " (" + table.select_list() + ", run_pk) SELECT " + values +
         "pk FROM runs WHERE id = $" + std::to_string(run_param) + " FOR KEY SHARE";
}

}  // namespace

const TableColumns kRunColumns{"runs", internal::kRunFields, field_count(internal::kRunFields)};
const TableColumns kStepColumns{"steps", internal::kStepFields, field_count(internal::kStepFields)};
const TableColumns kPendingWriteColumns{"pending_writes", internal::kPendingWriteFields, field_count(internal::kPendingWriteFields)};
const TableColumns kWorkflowColumns{"workflows", internal::kWorkflowFields, field_count(internal::kWorkflowFields)};

std::string TableColumns::select_list() const {
  std::string out;
  for (int i = 0; i < count; ++i) out += (i > 0 ? ", " : "") + std::string(columns[i]);
  return out;
}

std::string TableColumns::insert_sql() const {
  std::string out = std::string("INSERT INTO ") + table + " (" + select_list() + ") VALUES (";
  for (int i = 0; i < count; ++i) out += (i > 0 ? ", $" : "$") + std::to_string(i + 1);
  return out + ")";
}

std::string TableColumns::update_sql() const {
  std::string out = std::string("UPDATE ") + table + " SET ";
  for (int i = 1; i < count; ++i) out += (i > 1 ? ", " : "") + std::string(columns[i]) + " = $" + std::to_string(i + 1);
  return out + " WHERE " + columns[0] + " = $1";
}

Result<Value> read_json(const Rows& rows, int row, int column, const std::string& what) {
  Result<Value> parsed = parse_json(rows.text(row, column));
  if (!parsed.ok()) {
    return Status::internal(what + ": column " + std::to_string(column) +
                            " holds malformed JSON: " + parsed.status().message());
  }
  return parsed;
}

void add_run(Params& p, const RunRecord& run) {
  p.text(run.id).text(run_status_name(run.status)).text(run.workflow_id);
  p.text(run.workflow.to_json()).text(run.input.to_json()).text(run.config.to_json()).text(run.state.to_json());
  p.text(run.host_data.to_json()).text(run.error).text(run.parent_run_id).text(run.parent_node);
  // NULL, not '', for "no key": the UNIQUE constraint then ignores keyless runs.
  if (run.idempotency_key.empty()) {
    p.null();
  } else {
    p.text(run.idempotency_key);
  }
  p.text(run.forked_from_run_id).text(run.forked_from_checkpoint_id);
  p.integer(run.created_at_ms).integer(run.updated_at_ms).integer(run.started_at_ms).integer(run.ended_at_ms);
  p.integer(run.input_tokens).integer(run.output_tokens).integer(run.checkpoint_count).integer(run.recoveries);
}

const char* const kRunProgressSetSql =
    "UPDATE runs SET status = $2, error = $3, updated_at_ms = $4, started_at_ms = $5, ended_at_ms = $6, "
    "input_tokens = $7, output_tokens = $8, checkpoint_count = $9, state = $10, recoveries = $11";

void add_run_progress(Params& p, const RunRecord& run, bool state_is_checkpoints) {
  p.text(run.id).text(run_status_name(run.status)).text(run.error);
  p.integer(run.updated_at_ms).integer(run.started_at_ms).integer(run.ended_at_ms);
  p.integer(run.input_tokens).integer(run.output_tokens).integer(run.checkpoint_count);
  p.text(state_is_checkpoints ? std::string() : run.state.to_json());
  p.integer(run.recoveries);
}

Result<RunRecord> read_run(const Rows& rows, int row, int first) {
  RunRecord run;
  run.id = rows.string(row, first);
  Reader r(rows, row, first + 1, "run " + run.id);
  const std::string status = r.text();
  std::optional<RunStatus> parsed = run_status_from_name(status);
  if (!parsed) r.fail(Status::internal("unknown status '" + status + "'"));
  run.status = parsed.value_or(RunStatus::kFailed);
  run.workflow_id = r.text();
  run.workflow = r.json();
  run.input = r.json();
  run.config = r.json();
  if (rows.text(row, first + 6).empty()) {
    r.text();
    run.state = Value();  // null: the caller takes the state from the latest checkpoint
  } else {
    run.state = r.json();
  }
  run.host_data = r.json();
  run.error = r.text();
  run.parent_run_id = r.text();
  run.parent_node = r.text();
  run.idempotency_key = r.text();  // NULL reads as ""
  run.forked_from_run_id = r.text();
  run.forked_from_checkpoint_id = r.text();
  run.created_at_ms = r.integer();
  run.updated_at_ms = r.integer();
  run.started_at_ms = r.integer();
  run.ended_at_ms = r.integer();
  run.input_tokens = r.integer();
  run.output_tokens = r.integer();
  run.checkpoint_count = r.integer();
  run.recoveries = r.integer();
  if (!r.status().ok()) return r.status();
  return run;
}

void add_step(Params& p, const StepRecord& step) {
  p.text(step.id).text(step.run_id).text(step.node_name).text(step.type).text(step_status_name(step.status));
  p.integer(step.attempt).integer(step.max_attempts).integer(step.superstep).integer(step.item_index);
  p.text(step.parent_step_id).text(step.worker_id).text(step.child_run_id);
  p.text(step.input.to_json()).text(step.output.to_json()).text(step.error);
  p.integer(step.input_tokens).integer(step.output_tokens);
  p.integer(step.created_at_ms).integer(step.started_at_ms).integer(step.ended_at_ms);
}

Result<StepRecord> read_step(const Rows& rows, int row, int first) {
  StepRecord step;
  step.id = rows.string(row, first);
  Reader r(rows, row, first + 1, "step " + step.id);
  step.run_id = r.text();
  step.node_name = r.text();
  step.type = r.text();
  const std::string status = r.text();
  std::optional<StepStatus> parsed = step_status_from_name(status);
  if (!parsed) r.fail(Status::internal("unknown status '" + status + "'"));
  step.status = parsed.value_or(StepStatus::kFailed);
  step.attempt = r.small_integer();
  step.max_attempts = r.small_integer();
  step.superstep = r.integer();
  step.item_index = r.small_integer();
  step.parent_step_id = r.text();
  step.worker_id = r.text();
  step.child_run_id = r.text();
  step.input = r.json();
  step.output = r.json();
  step.error = r.text();
  step.input_tokens = r.integer();
  step.output_tokens = r.integer();
  step.created_at_ms = r.integer();
  step.started_at_ms = r.integer();
  step.ended_at_ms = r.integer();
  if (!r.status().ok()) return r.status();
  return step;
}

void add_pending_write(Params& p, const PendingWrite& write) {
  p.text(write.run_id).integer(write.superstep).text(write.node_name).text(write.result.to_json());
}

Result<PendingWrite> read_pending_write(const Rows& rows, int row, int first) {
  PendingWrite write;
  write.run_id = rows.string(row, first);
  Reader r(rows, row, first + 1, "a pending write of run " + write.run_id);
  write.superstep = r.integer();
  write.node_name = r.text();
  write.result = r.json();
  if (!r.status().ok()) return r.status();
  return write;
}

void add_workflow(Params& p, const WorkflowRecord& workflow) {
  p.text(workflow.id).text(workflow.name).integer(workflow.version).text(workflow.definition.to_json());
  p.integer(workflow.created_at_ms).integer(workflow.updated_at_ms);
}

Result<WorkflowRecord> read_workflow(const Rows& rows, int row, int first) {
  WorkflowRecord workflow;
  workflow.id = rows.string(row, first);
  Reader r(rows, row, first + 1, "workflow " + workflow.id);
  workflow.name = r.text();
  workflow.version = r.integer();
  workflow.definition = r.json();
  workflow.created_at_ms = r.integer();
  workflow.updated_at_ms = r.integer();
  if (!r.status().ok()) return r.status();
  return workflow;
}

const std::string& pending_write_insert_sql() {
  static const std::string sql = insert_for_run(kPendingWriteColumns, 1);
  return sql;
}

namespace {

// Keeps the row's pk (listing order is first-write order) and its run.
std::string step_conflict_clause() {
  std::string out = " ON CONFLICT (id) DO UPDATE SET ";
  for (int i = 1; i < kStepColumns.count; ++i) {
    out += std::string(i > 1 ? ", " : "") + kStepColumns.columns[i] + " = EXCLUDED." + kStepColumns.columns[i];
  }
  return out;
}

}  // namespace

const std::string& step_upsert_sql() {
  static const std::string sql = insert_for_run(kStepColumns, 2) + step_conflict_clause();
  return sql;
}

namespace {

// The statement's run row (CTE "run", its one row) takes the events' seqs:
// SET clause and RETURNING list, the number of events being parameter $count.
std::string seq_bump(int count) { return "last_event_seq = last_event_seq + $" + std::to_string(count) + "::bigint"; }

std::string seq_returning(bool announce) {
  std::string out = " RETURNING pk, last_event_seq";
  // "<schema> e <run id>" (pg_change_watch.h), sent at commit, for the one
  // row the UPDATE changed. current_schema() is where the statement found
  // its tables. A run id too long for a payload is not announced.
  if (announce) {
    out += ", CASE WHEN octet_length($1) < 7000 THEN pg_notify('orch_changes', current_schema() || ' e ' || $1) END "
           "AS announced";
  }
  return out;
}

// The INSERT of the events' row, from CTE "run" and parameters $first..
// $first+4 (add_event_row).
std::string event_row_from_run(int first) {
  const char* const types[] = {"::bigint", "::text", "::text", "::bigint", "::text"};
  std::string values;
  for (int i = 0; i < 5; ++i) values += ", $" + std::to_string(first + i) + types[i];
  return "INSERT INTO events (run_pk, run_id, last_seq, event_count, kind, data, created_at_ms, state_checkpoint_id) "
         "SELECT run.pk, $1, run.last_event_seq" + values + " FROM run RETURNING last_seq, event_count";
}

}  // namespace

const std::string& event_append_sql(bool announce) {
  // The run row holds the counter: the UPDATE takes the next seqs under the
  // row's lock, so appends from any number of connections or instances get
  // exact, gapless seqs. No row: no such run. A superstep's events are one
  // row of one statement.
  auto build = [](bool with_notify) {
    return "WITH run AS (UPDATE runs SET " + seq_bump(2) + " WHERE id = $1" + seq_returning(with_notify) + ") " +
           event_row_from_run(2);
  };
  static const std::string announced = build(true);
  static const std::string silent = build(false);
  return announce ? announced : silent;
}

namespace {

// Which of kStepColumns are bigint (the others are text), in add_step's order.
constexpr bool kStepIntegerColumn[] = {false, false, false, false, false, true,  true,  true,  true,  false,
                                       false, false, false, false, false, true,  true,  true,  true,  true};
static_assert(sizeof(kStepIntegerColumn) / sizeof(kStepIntegerColumn[0]) == field_count(internal::kStepFields));

}  // namespace

std::string steps_cte(int first, bool by_member) {
  std::string arrays = by_member ? "$" + std::to_string(first++) + "::bigint[], " : "";
  std::string names, selected;
  for (int i = 0; i < kStepColumns.count; ++i) {
    const std::string sep = i > 0 ? ", " : "";
    arrays += sep + "$" + std::to_string(first + i) + (kStepIntegerColumn[i] ? "::bigint[]" : "::text[]");
    names += sep + kStepColumns.columns[i];
    selected += sep + "s." + kStepColumns.columns[i];
  }
  const std::string source = by_member ? "FROM run JOIN unnest(" + arrays + ") WITH ORDINALITY AS s(member_index, " +
                                             names + ", n) ON s.member_index = run.member_index"
                                       : "FROM run, unnest(" + arrays + ") WITH ORDINALITY AS s(" + names + ", n)";
  return "steps AS (INSERT INTO steps (" + kStepColumns.select_list() + ", run_pk) SELECT " + selected +
         ", run.pk " + source + " ORDER BY s.n" + step_conflict_clause() + ")";
}

void StepArrays::add(const StepRecord& step) {
  if (texts_.empty()) {
    texts_.resize(static_cast<size_t>(kStepColumns.count));
    integers_.resize(static_cast<size_t>(kStepColumns.count));
  }
  texts_[0].push_back(step.id);
  texts_[1].push_back(step.run_id);
  texts_[2].push_back(step.node_name);
  texts_[3].push_back(step.type);
  texts_[4].emplace_back(step_status_name(step.status));
  integers_[5].push_back(step.attempt);
  integers_[6].push_back(step.max_attempts);
  integers_[7].push_back(step.superstep);
  integers_[8].push_back(step.item_index);
  texts_[9].push_back(step.parent_step_id);
  texts_[10].push_back(step.worker_id);
  texts_[11].push_back(step.child_run_id);
  texts_[12].push_back(step.input.to_json());
  texts_[13].push_back(step.output.to_json());
  texts_[14].push_back(step.error);
  integers_[15].push_back(step.input_tokens);
  integers_[16].push_back(step.output_tokens);
  integers_[17].push_back(step.created_at_ms);
  integers_[18].push_back(step.started_at_ms);
  integers_[19].push_back(step.ended_at_ms);
}

void StepArrays::bind(Params& params) const {
  for (size_t i = 0; i < static_cast<size_t>(kStepColumns.count); ++i) {
    if (kStepIntegerColumn[i]) {
      params.integer_array(i < integers_.size() ? integers_[i] : std::vector<int64_t>());
    } else {
      params.text_array(i < texts_.size() ? texts_[i] : std::vector<std::string>());
    }
  }
}

void add_step_arrays(Params& params, const std::vector<const StepRecord*>& steps) {
  StepArrays arrays;
  for (const StepRecord* step : steps) arrays.add(*step);
  arrays.bind(params);
}

const std::string& checkpoint_events_sql(bool announce, bool with_step, bool conditional) {
  auto build = [](bool with_notify, bool step, bool checked) {
    std::string where = " WHERE id = $1";
    if (checked) {
      // Re-read at the row's lock (READ COMMITTED re-checks an UPDATE's WHERE
      // against the row's newest version): a stale writer or a chain that
      // moved on matches no row, and the statement writes nothing.
      const int first = checkpoint_events_condition_param(step);
      const std::string expected = std::to_string(first), owner = std::to_string(first + 1),
                        epoch = std::to_string(first + 2);
      where += " AND latest_checkpoint_id = $" + expected + " AND ($" + epoch + "::bigint = 0 OR (lease_owner = $" +
               owner + " AND lease_epoch = $" + epoch + "::bigint))";
    }
    std::string out = std::string("WITH run AS (") + kRunProgressSetSql + ", latest_checkpoint_id = $12, " +
                      seq_bump(23) + where + seq_returning(with_notify) +
                      "), dropped AS (DELETE FROM pending_writes WHERE run_pk = (SELECT pk FROM run)), "
                      "checkpoint AS (INSERT INTO checkpoints (id, run_pk, run_id, seq, parent_id, step_id, version, "
                      "created_at_ms, kind, base_seq, chain_bytes, base_bytes, body) SELECT $12, run.pk, $1, $13, "
                      "$14, $15, $16, $17, $18, $19, $20, $21, $22 FROM run)";
    if (step) out += ", " + steps_cte(kCheckpointEventsParams + 1, /*by_member=*/false);
    return out + " " + event_row_from_run(23);
  };
  static const std::string variants[8] = {build(false, false, false), build(false, true, false),
                                          build(true, false, false),  build(true, true, false),
                                          build(false, false, true),  build(false, true, true),
                                          build(true, false, true),   build(true, true, true)};
  return variants[(conditional ? 4 : 0) + (announce ? 2 : 0) + (with_step ? 1 : 0)];
}

int checkpoint_events_condition_param(bool with_step) {
  return kCheckpointEventsParams + 1 + (with_step ? kStepColumns.count : 0);
}

void add_checkpoint_condition(Params& params, const std::string& expected_checkpoint, const std::string& lease_owner,
                              int64_t lease_epoch) {
  params.text(expected_checkpoint).text(lease_owner).integer(lease_epoch);
}

void add_event_row(Params& params, const std::vector<EventRecord>& events, const Checkpoint* checkpoint) {
  EventRow row = encode_event_row(events, checkpoint);
  params.integer(row.count).text(row.kind).text(row.data).integer(row.created_at_ms).text(row.state_checkpoint_id);
}

Params event_append_params(const std::string& run_id, const std::vector<EventRecord>& events,
                           const Checkpoint* checkpoint) {
  Params params;
  params.text(run_id);
  add_event_row(params, events, checkpoint);
  return params;
}

}  // namespace orch::postgres
