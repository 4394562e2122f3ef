// SPDX-License-Identifier: MIT
// Row <-> record mapping of the SQLite store.
#include "store/sqlite/sqlite_rows.h"

#include "orch/event_kinds.h"
#include "store/record_fields.h"
#include "store/sqlite/sqlite_definitions.h"
#include "store/sqlite/sqlite_packed_value.h"
#include "store/store_batch.h"

#include <SQLiteCpp/Column.h>

#include <optional>
#include <string_view>

namespace orch::sqlite {
namespace {

using internal::field_count;
using internal::step_status_from_name;

std::string text(const SQLite::Statement& stmt, int index) {
  SQLite::Column col = stmt.getColumn(index);
  return std::string(col.getText(), static_cast<size_t>(col.getBytes()));
}

int64_t integer(const SQLite::Statement& stmt, int index) {
  return stmt.getColumn(index).getInt64();
}

void bind_json(SQLite::Statement& stmt, int index, const Value& value) {
  stmt.bind(index, value.to_json());
}

// A record's own string, bound without SQLite copying it: the record outlives
// the statement's execution (see sqlite_rows.h).
void bind_field(SQLite::Statement& stmt, int index, const std::string& field) { stmt.bindNoCopy(index, field); }

}  // namespace

const TableColumns kRunColumns{"runs", internal::kRunFields, field_count(internal::kRunFields)};
const TableColumns kStepColumns{"steps", internal::kStepFields, field_count(internal::kStepFields), /*keyed_by_run_pk=*/true};
const TableColumns kPendingWriteColumns{"pending_writes", internal::kPendingWriteFields,
                                        field_count(internal::kPendingWriteFields)};
const TableColumns kWorkflowColumns{"workflows", internal::kWorkflowFields, field_count(internal::kWorkflowFields)};

const std::string& run_select_list() {
  static const std::string list = [] {
    std::string out;
    for (int i = 0; i < kRunColumns.count; ++i) {
      if (i > 0) out += ", ";
      const std::string column = kRunColumns.columns[i];
      // A run written before schema 7 and not since has no definition row only
      // if the migration failed to give it one; its own column is the fallback.
      out += column == "workflow"
                 ? "COALESCE((SELECT d.body FROM definitions d WHERE d.pk = runs.definition_pk), runs.workflow)"
                 : "runs." + column;
    }
    return out;
  }();
  return list;
}

const std::string& step_select_list() {
  static const std::string list = [] {
    std::string out;
    for (int i = 0; i < kStepColumns.count; ++i) {
      if (i > 0) out += ", ";
      const std::string column = kStepColumns.columns[i];
      out += column == "run_id" ? "(SELECT r.id FROM runs r WHERE r.pk = steps.run_pk)" : "steps." + column;
    }
    return out;
  }();
  return list;
}

const std::string& run_insert_sql() {
  static const std::string sql = [] {
    std::string out = "INSERT INTO runs (" + kRunColumns.select_list() + ", definition_pk) VALUES (";
    for (int i = 0; i <= kRunColumns.count; ++i) out += (i > 0 ? ", ?" : "?") + std::to_string(i + 1);
    return out + ")";
  }();
  return sql;
}

const std::string& run_update_sql() {
  static const std::string sql = [] {
    std::string out = kRunColumns.update_sql();
    const std::string where = " WHERE ";
    const size_t at = out.rfind(where);
    return out.substr(0, at) + ", definition_pk = ?" + std::to_string(kRunColumns.count + 1) + out.substr(at);
  }();
  return sql;
}

std::string TableColumns::select_list() const {
  std::string out;
  for (int i = 0; i < count; ++i) {
    if (i > 0) out += ", ";
    out += columns[i];
  }
  return out;
}

std::string TableColumns::insert_sql() const {
  std::string out = std::string("INSERT INTO ") + table + " (" + select_list() +
                    (keyed_by_run_pk ? ", run_pk" : "") + ") VALUES (";
  const int params = keyed_by_run_pk ? count + 1 : count;
  for (int i = 0; i < params; ++i) out += (i > 0 ? ", ?" : "?") + std::to_string(i + 1);
  return out + ")";
}

std::string TableColumns::upsert_sql() const {
  std::string sql = insert_sql() + " ON CONFLICT (" + columns[0] + ") DO UPDATE SET ";
  for (int i = 1; i < count; ++i) {
    if (i > 1) sql += ", ";
    sql += std::string(columns[i]) + " = excluded." + columns[i];
  }
  return sql;
}

std::string TableColumns::update_sql() const {
  std::string out = std::string("UPDATE ") + table + " SET ";
  for (int i = 1; i < count; ++i) {
    if (i > 1) out += ", ";
    out += std::string(columns[i]) + " = ?" + std::to_string(i + 1);
  }
  return out + " WHERE " + columns[0] + " = ?1";
}

Result<Value> read_json_column(const SQLite::Statement& stmt, int index, const std::string& what) {
  SQLite::Column col = stmt.getColumn(index);
  std::string_view json(col.getText(), static_cast<size_t>(col.getBytes()));
  Result<Value> parsed = parse_json(json);
  if (!parsed.ok()) {
    return Status::internal(what + ": column " + stmt.getColumnName(index) +
                            " holds malformed JSON: " + parsed.status().message());
  }
  return parsed;
}

void bind_run(SQLite::Statement& stmt, const RunRecord& run) {
  bind_field(stmt, 1, run.id);
  stmt.bind(2, std::string(run_status_name(run.status)));
  bind_field(stmt, 3, run.workflow_id);
  stmt.bind(4, std::string());  // the definitions row holds it (run_insert_sql)
  bind_json(stmt, 5, run.input);
  bind_json(stmt, 6, run.config);
  bind_json(stmt, 7, run.state);
  bind_json(stmt, 8, run.host_data);
  bind_field(stmt, 9, run.error);
  bind_field(stmt, 10, run.parent_run_id);
  bind_field(stmt, 11, run.parent_node);
  // NULL, not '', for "no key": the UNIQUE index then ignores keyless runs.
  if (run.idempotency_key.empty()) {
    stmt.bind(12);
  } else {
    bind_field(stmt, 12, run.idempotency_key);
  }
  bind_field(stmt, 13, run.forked_from_run_id);
  bind_field(stmt, 14, run.forked_from_checkpoint_id);
  stmt.bind(15, run.created_at_ms);
  stmt.bind(16, run.updated_at_ms);
  stmt.bind(17, run.started_at_ms);
  stmt.bind(18, run.ended_at_ms);
  stmt.bind(19, run.input_tokens);
  stmt.bind(20, run.output_tokens);
  stmt.bind(21, run.checkpoint_count);
  stmt.bind(22, run.recoveries);
}

const char* const kRunProgressSql =
    "UPDATE runs SET error = ?3, updated_at_ms = ?4, started_at_ms = ?5, "
    "ended_at_ms = ?6, input_tokens = ?7, output_tokens = ?8, checkpoint_count = ?9, state = ?10, "
    "recoveries = ?12, last_event_seq = ?11 WHERE pk = ?1";
const char* const kRunStatusSql = "UPDATE runs SET status = ?2 WHERE pk = ?1";

void bind_run_progress(SQLite::Statement& stmt, const RunRecord& run, int64_t pk, bool state_is_checkpoints,
                       int64_t last_event_seq) {
  // '': the run's state is its latest checkpoint's (see read_run).
  if (state_is_checkpoints) {
    stmt.bind(10, std::string());
  } else {
    bind_json(stmt, 10, run.state);
  }
  stmt.bind(1, pk);
  bind_field(stmt, 3, run.error);
  stmt.bind(4, run.updated_at_ms);
  stmt.bind(5, run.started_at_ms);
  stmt.bind(6, run.ended_at_ms);
  stmt.bind(7, run.input_tokens);
  stmt.bind(8, run.output_tokens);
  stmt.bind(9, run.checkpoint_count);
  stmt.bind(11, last_event_seq);
  stmt.bind(12, run.recoveries);
}

Result<RunCounters> read_run_counters(Connection& conn, const std::string& run_id) {
  Query q(conn, "SELECT pk, last_event_seq, status, lease_owner, lease_epoch FROM runs WHERE id = ?1");
  q->bind(1, run_id);
  if (!q->executeStep()) return Status::not_found("run " + run_id + " not found");
  RunCounters out;
  out.pk = q->getColumn(0).getInt64();
  out.last_event_seq = q->getColumn(1).getInt64();
  out.status = q->getColumn(2).getString();
  out.lease_owner = q->getColumn(3).getString();
  out.lease_epoch = q->getColumn(4).getInt64();
  return out;
}

Result<RunRecord> read_run(const SQLite::Statement& stmt) {
  RunRecord run;
  run.id = text(stmt, 0);
  const std::string what = "run " + run.id;
  std::optional<RunStatus> status = run_status_from_name(text(stmt, 1));
  if (!status) return Status::internal(what + ": unknown status '" + text(stmt, 1) + "'");
  run.status = *status;
  run.workflow_id = text(stmt, 2);
  ORCH_ASSIGN_OR_RETURN(run.workflow, read_json_column(stmt, 3, what));
  ORCH_ASSIGN_OR_RETURN(run.input, read_json_column(stmt, 4, what));
  ORCH_ASSIGN_OR_RETURN(run.config, read_json_column(stmt, 5, what));
  if (stmt.getColumn(6).getBytes() > 0) {
    ORCH_ASSIGN_OR_RETURN(run.state, read_json_column(stmt, 6, what));
  } else {
    run.state = Value();  // null: the caller takes the state from the latest checkpoint
  }
  ORCH_ASSIGN_OR_RETURN(run.host_data, read_json_column(stmt, 7, what));
  run.error = text(stmt, 8);
  run.parent_run_id = text(stmt, 9);
  run.parent_node = text(stmt, 10);
  run.idempotency_key = text(stmt, 11);  // NULL reads as ""
  run.forked_from_run_id = text(stmt, 12);
  run.forked_from_checkpoint_id = text(stmt, 13);
  run.created_at_ms = integer(stmt, 14);
  run.updated_at_ms = integer(stmt, 15);
  run.started_at_ms = integer(stmt, 16);
  run.ended_at_ms = integer(stmt, 17);
  run.input_tokens = integer(stmt, 18);
  run.output_tokens = integer(stmt, 19);
  run.checkpoint_count = integer(stmt, 20);
  run.recoveries = integer(stmt, 21);
  return run;
}

namespace {

// Step statuses as stored since schema 9: the digit of their place here plus
// one. Append only. Rows written before hold the status's name.
constexpr StepStatus kStepStatusCodes[] = {StepStatus::kPending,   StepStatus::kReady,  StepStatus::kRunning,
                                           StepStatus::kCompleted, StepStatus::kFailed, StepStatus::kSkipped,
                                           StepStatus::kInterrupted};
constexpr int kStepStatusCount = static_cast<int>(sizeof(kStepStatusCodes) / sizeof(kStepStatusCodes[0]));
static_assert(kStepStatusCount <= 9, "a status code is one digit");

std::string step_status_code(StepStatus status) {
  for (int i = 0; i < kStepStatusCount; ++i) {
    if (kStepStatusCodes[i] == status) return std::string(1, static_cast<char>('1' + i));
  }
  return std::string(step_status_name(status));
}

std::optional<StepStatus> step_status_from_stored(const std::string& stored) {
  if (stored.size() == 1 && stored[0] >= '1' && stored[0] < '1' + kStepStatusCount) return kStepStatusCodes[stored[0] - '1'];
  return step_status_from_name(stored);
}

// Node types as stored since schema 10: the workflow language's types as a
// one-byte BLOB, their place here plus one (a BLOB keeps its type in the TEXT
// column, so no type name can be taken for a code); other types, and rows
// written before, as text. Append only.
constexpr const char* kStepTypeCodes[] = {"task", "agent", "route", "interrupt", "send", "transform", "subgraph"};
constexpr int kStepTypeCount = static_cast<int>(sizeof(kStepTypeCodes) / sizeof(kStepTypeCodes[0]));

int step_type_code(const std::string& type) {
  for (int i = 0; i < kStepTypeCount; ++i) {
    if (type == kStepTypeCodes[i]) return i + 1;
  }
  return 0;
}

void bind_step_type(SQLite::Statement& stmt, int index, const std::string& type) {
  if (const int code = step_type_code(type); code > 0) {
    const char byte = static_cast<char>(code);
    stmt.bind(index, static_cast<const void*>(&byte), 1);  // copied by SQLite
  } else {
    bind_field(stmt, index, type);
  }
}

std::optional<std::string> read_step_type(const SQLite::Statement& stmt, int index) {
  SQLite::Column col = stmt.getColumn(index);
  if (!col.isBlob()) return text(stmt, index);
  if (col.getBytes() != 1) return std::nullopt;
  const int code = static_cast<unsigned char>(static_cast<const char*>(col.getBlob())[0]);
  if (code < 1 || code > kStepTypeCount) return std::nullopt;
  return std::string(kStepTypeCodes[code - 1]);
}

// A step's start and end times are stored relative to its creation (one or
// two bytes instead of six): 0 stays 0 (not started, not ended), a time at or
// after the creation is stored as the difference plus one, one before it as
// the (negative) difference.
int64_t relative_time(int64_t time, int64_t created) {
  if (time == 0) return 0;
  const auto d = static_cast<int64_t>(static_cast<uint64_t>(time) - static_cast<uint64_t>(created));
  return d >= 0 ? static_cast<int64_t>(static_cast<uint64_t>(d) + 1) : d;
}

int64_t absolute_time(int64_t stored, int64_t created) {
  if (stored == 0) return 0;
  const uint64_t d = stored > 0 ? static_cast<uint64_t>(stored) - 1 : static_cast<uint64_t>(stored);
  return static_cast<int64_t>(static_cast<uint64_t>(created) + d);
}

// A JSON column of a step: packed since schema 9 (copied by SQLite), JSON
// text for a value too deep to pack.
void bind_packed(SQLite::Statement& stmt, int index, const Value& value) {
  const std::string packed = pack_value(value);
  if (packed.empty()) {
    bind_json(stmt, index, value);
  } else {
    stmt.bind(index, static_cast<const void*>(packed.data()), static_cast<int>(packed.size()));
  }
}

}  // namespace

void bind_step(SQLite::Statement& stmt, const StepRecord& step) {
  bind_id(stmt, 1, step.id);
  stmt.bind(2, std::string());  // the run's row holds it (step_select_list)
  bind_field(stmt, 3, step.node_name);
  bind_step_type(stmt, 4, step.type);
  stmt.bind(5, step_status_code(step.status));
  stmt.bind(6, step.attempt);
  stmt.bind(7, step.max_attempts);
  stmt.bind(8, step.superstep);
  stmt.bind(9, step.item_index);
  bind_field(stmt, 10, step.parent_step_id);
  bind_field(stmt, 11, step.worker_id);
  bind_field(stmt, 12, step.child_run_id);
  bind_packed(stmt, 13, step.input);
  bind_packed(stmt, 14, step.output);
  bind_field(stmt, 15, step.error);
  stmt.bind(16, step.input_tokens);
  stmt.bind(17, step.output_tokens);
  stmt.bind(18, step.created_at_ms);
  stmt.bind(19, relative_time(step.started_at_ms, step.created_at_ms));
  stmt.bind(20, relative_time(step.ended_at_ms, step.created_at_ms));
}

Result<StepRecord> read_step(const SQLite::Statement& stmt) {
  StepRecord step;
  step.id = read_id(stmt, 0);
  const std::string what = "step " + step.id;
  step.run_id = text(stmt, 1);
  step.node_name = text(stmt, 2);
  std::optional<std::string> type = read_step_type(stmt, 3);
  if (!type) return Status::internal(what + ": unknown node type code");
  step.type = std::move(*type);
  std::optional<StepStatus> status = step_status_from_stored(text(stmt, 4));
  if (!status) return Status::internal(what + ": unknown status '" + text(stmt, 4) + "'");
  step.status = *status;
  step.attempt = stmt.getColumn(5).getInt();
  step.max_attempts = stmt.getColumn(6).getInt();
  step.superstep = integer(stmt, 7);
  step.item_index = stmt.getColumn(8).getInt();
  step.parent_step_id = text(stmt, 9);
  step.worker_id = text(stmt, 10);
  step.child_run_id = text(stmt, 11);
  ORCH_ASSIGN_OR_RETURN(step.input, read_event_data(stmt, 12, what));
  ORCH_ASSIGN_OR_RETURN(step.output, read_event_data(stmt, 13, what));
  step.error = text(stmt, 14);
  step.input_tokens = integer(stmt, 15);
  step.output_tokens = integer(stmt, 16);
  step.created_at_ms = integer(stmt, 17);
  step.started_at_ms = absolute_time(integer(stmt, 18), step.created_at_ms);
  step.ended_at_ms = absolute_time(integer(stmt, 19), step.created_at_ms);
  return step;
}

namespace {

bool is_string_equal(const Value& v, const std::string& s) { return v.is_string() && v.as_string() == s; }

// {"checkpoint_id": id, "version": version, "step_id": step}, in that order.
bool is_checkpoint_created(const Value& data, const Checkpoint& cp) {
  if (!data.is_object() || data.size() != 3) return false;
  const Object& fields = data.as_object();
  auto it = fields.begin();
  if (it->first != "checkpoint_id" || !is_string_equal(it->second, cp.id)) return false;
  ++it;
  if (it->first != "version" || !it->second.is_int() || it->second.as_int() != cp.version) return false;
  ++it;
  return it->first == "step_id" && is_string_equal(it->second, cp.step_id);
}

// Packed, or JSON text for a value too deep to pack.
void set_event_data(StoredEvent* out, const Value& data) {
  out->data = pack_value(data);
  out->packed = !out->data.empty();
  if (!out->packed) out->data = data.to_json();
}

// The form `event` is stored in beside `checkpoint` (null: none); for
// kWithoutState, *rest is the data without its state.
EventForm event_form(const EventRecord& event, const Checkpoint* checkpoint, std::optional<Value>* rest) {
  if (checkpoint == nullptr) return EventForm::kWhole;
  if (event.kind == "checkpoint.created" && is_checkpoint_created(event.data, *checkpoint)) {
    return EventForm::kCheckpointCreated;
  }
  *rest = internal::without_checkpoint_state(event.data, checkpoint->state);
  if (!*rest) return EventForm::kWhole;
  if ((*rest)->size() == 1 && (*rest)->as_object().begin()->first == "step" &&
      is_string_equal((*rest)->as_object().begin()->second, checkpoint->step_id)) {
    return EventForm::kValues;
  }
  return EventForm::kWithoutState;
}

}  // namespace

StoredEvent encode_event(const EventRecord& event, const Checkpoint* checkpoint) {
  StoredEvent out;
  std::optional<Value> rest;
  out.form = event_form(event, checkpoint, &rest);
  switch (out.form) {
    case EventForm::kWhole:
      set_event_data(&out, event.data);
      break;
    case EventForm::kWithoutState:
      set_event_data(&out, *rest);
      break;
    case EventForm::kCheckpointCreated:
    case EventForm::kValues:
      break;
  }
  return out;
}

namespace {

// The engine's event kinds, stored as their position here plus one (an
// integer of one byte instead of their names, ~12 bytes an event): events.kind
// holds such a code, or the name of a kind not listed. Append only: a code
// names its kind for good.
constexpr const char* kKindCodes[] = {
    event_kind::kRunStarted,   event_kind::kRunCompleted,  event_kind::kRunFailed,   event_kind::kRunCancelled,
    event_kind::kRunInterrupted, event_kind::kRunResumed,  event_kind::kRunRetried,  event_kind::kRunReplayed,
    event_kind::kRunForked,    event_kind::kCheckpointCreated, event_kind::kStateInjected, event_kind::kStepStarted,
    event_kind::kStepCompleted, event_kind::kStepFailed,   event_kind::kStepRetrying, event_kind::kCacheHit,
    event_kind::kValues,       event_kind::kUpdates,       event_kind::kTaskStart,   event_kind::kTaskResult,
    event_kind::kCustom,       event_kind::kAgentEvent};
constexpr int kKindCodeCount = static_cast<int>(sizeof(kKindCodes) / sizeof(kKindCodes[0]));

int kind_code(const std::string& kind) {
  for (int i = 0; i < kKindCodeCount; ++i) {
    if (kind == kKindCodes[i]) return i + 1;
  }
  return 0;
}

}  // namespace

int event_kind_code_for_testing(const std::string& kind) { return kind_code(kind); }

const char* const kEventInsertSql =
    "INSERT INTO events (run_pk, seq, kind, data, created_at_ms, form, checkpoint_seq) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const char* const kEventSelectList = "seq, kind, data, created_at_ms, form, checkpoint_seq";

void bind_event_data(SQLite::Statement& stmt, int index, const StoredEvent& stored) {
  if (stored.packed) {
    stmt.bindNoCopy(index, static_cast<const void*>(stored.data.data()), static_cast<int>(stored.data.size()));
  } else {
    bind_field(stmt, index, stored.data);
  }
}

int64_t event_time_base(Connection& conn, int64_t run_pk) {
  Query q(conn, "SELECT created_at_ms FROM events WHERE run_pk = ?1 AND seq = 1");
  q->bind(1, run_pk);
  return q->executeStep() ? q->getColumn(0).getInt64() : 0;
}

namespace {

// Wrapping arithmetic: a damaged row's time reads back wrong, never as
// undefined behaviour.
int64_t wrapping_add(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t wrapping_sub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}

}  // namespace

void bind_event(SQLite::Statement& stmt, int64_t run_pk, int64_t seq, const EventRecord& event,
                const StoredEvent& stored, int64_t checkpoint_seq, int64_t time_base) {
  stmt.bind(1, run_pk);
  stmt.bind(2, seq);
  if (const int code = kind_code(event.kind); code > 0) {
    stmt.bind(3, code);
  } else {
    bind_field(stmt, 3, event.kind);
  }
  bind_event_data(stmt, 4, stored);
  stmt.bind(5, seq == 1 ? event.created_at_ms : wrapping_sub(event.created_at_ms, time_base));
  stmt.bind(6, static_cast<int>(stored.form));
  if (stored.form == EventForm::kWhole) {
    stmt.bind(7);
  } else {
    stmt.bind(7, checkpoint_seq);
  }
}

Result<Value> read_event_data(const SQLite::Statement& stmt, int index, const std::string& what) {
  SQLite::Column col = stmt.getColumn(index);
  if (!col.isBlob()) return read_json_column(stmt, index, what);
  Result<Value> value =
      unpack_value(std::string_view(static_cast<const char*>(col.getBlob()), static_cast<size_t>(col.getBytes())));
  if (!value.ok()) return Status::internal(what + ": column " + stmt.getColumnName(index) + ": " + value.status().message());
  return value;
}

Result<EventRecord> read_event(const SQLite::Statement& stmt, const std::string& run_id, int64_t time_base,
                               EventForm* form, int64_t* checkpoint_seq) {
  EventRecord event;
  event.run_id = run_id;
  event.seq = integer(stmt, 0);
  const std::string what = "event " + std::to_string(event.seq) + " of run " + run_id;
  if (stmt.getColumn(1).isInteger()) {
    const int64_t code = integer(stmt, 1);
    if (code < 1 || code > kKindCodeCount) return Status::internal(what + ": unknown kind code " + std::to_string(code));
    event.kind = kKindCodes[code - 1];
  } else {
    event.kind = text(stmt, 1);
  }
  const int64_t stored_form = integer(stmt, 4);
  if (stored_form < 0 || stored_form > static_cast<int64_t>(EventForm::kValues) ||
      (stored_form != 0 && stmt.getColumn(5).isNull())) {
    return Status::internal(what + ": unknown form " + std::to_string(stored_form));
  }
  *form = static_cast<EventForm>(stored_form);
  *checkpoint_seq = integer(stmt, 5);
  if (*form == EventForm::kWhole || *form == EventForm::kWithoutState) {
    ORCH_ASSIGN_OR_RETURN(event.data, read_event_data(stmt, 2, what));
  }
  event.created_at_ms = event.seq == 1 ? integer(stmt, 3) : wrapping_add(integer(stmt, 3), time_base);
  return event;
}

void complete_event(EventRecord* event, EventForm form, const Checkpoint& checkpoint) {
  switch (form) {
    case EventForm::kWhole:
      return;
    case EventForm::kWithoutState:
      event->data.set("state", checkpoint.state);
      return;
    case EventForm::kCheckpointCreated:
      event->data = Value::object({{"checkpoint_id", checkpoint.id},
                                   {"version", static_cast<long long>(checkpoint.version)},
                                   {"step_id", checkpoint.step_id}});
      return;
    case EventForm::kValues:
      event->data = Value::object({{"step", checkpoint.step_id}, {"state", checkpoint.state}});
      return;
  }
}

namespace {

// Flags of an event in a batch row (sqlite_rows.h).
constexpr unsigned char kFormBits = 0x03;
constexpr unsigned char kHasTime = 0x04;
static_assert(kKindCodeCount < 256, "a batch row holds an event's kind code in a byte");

uint64_t zigzag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t unzigzag(uint64_t z) { return static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1)); }

}  // namespace

std::string encode_event_batch(const std::vector<EventRecord>& events, const Checkpoint* checkpoint, bool* derived) {
  *derived = false;
  if (events.size() < 2) return std::string();
  // Every event's form first: the data without its state must stay alive
  // (and in place) while the packer remembers its strings.
  std::vector<EventForm> forms(events.size());
  std::vector<std::optional<Value>> rests(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    forms[i] = event_form(events[i], checkpoint, &rests[i]);
    if (forms[i] != EventForm::kWhole) *derived = true;
  }
  std::string out;
  ValuePacker packer(&out);
  const int64_t first_time = events.front().created_at_ms;
  for (size_t i = 0; i < events.size(); ++i) {
    const EventRecord& event = events[i];
    const int code = kind_code(event.kind);
    out.push_back(static_cast<char>(code));
    if (code == 0) {
      put_varint(&out, event.kind.size());
      out.append(event.kind);
    }
    const int64_t delta = wrapping_sub(event.created_at_ms, first_time);
    out.push_back(static_cast<char>(static_cast<unsigned char>(forms[i]) | (delta != 0 ? kHasTime : 0)));
    if (delta != 0) put_varint(&out, zigzag(delta));
    if (forms[i] == EventForm::kWhole && !packer.pack(event.data)) return std::string();
    if (forms[i] == EventForm::kWithoutState && !packer.pack(*rests[i])) return std::string();
  }
  return out;
}

void bind_event_batch(SQLite::Statement& stmt, int64_t run_pk, int64_t first_seq, const std::vector<EventRecord>& events,
                      const std::string& blob, bool derived, int64_t checkpoint_seq, int64_t time_base) {
  stmt.bind(1, run_pk);
  stmt.bind(2, first_seq);
  stmt.bind(3, static_cast<int64_t>(events.size()));
  stmt.bindNoCopy(4, static_cast<const void*>(blob.data()), static_cast<int>(blob.size()));
  const int64_t first_time = events.front().created_at_ms;
  stmt.bind(5, first_seq == 1 ? first_time : wrapping_sub(first_time, time_base));
  stmt.bind(6, kBatchRowForm);
  if (derived) {
    stmt.bind(7, checkpoint_seq);
  } else {
    stmt.bind(7);
  }
}

namespace {

Status read_event_batch(const SQLite::Statement& stmt, const std::string& run_id, int64_t time_base,
                        std::vector<RowEvent>* out) {
  const int64_t first_seq = integer(stmt, 0);
  const std::string what = "events from " + std::to_string(first_seq) + " of run " + run_id;
  SQLite::Column data = stmt.getColumn(2);
  const int64_t count = integer(stmt, 1);
  // Each event takes at least two bytes.
  if (!stmt.getColumn(1).isInteger() || !data.isBlob() || count < 2 || count > data.getBytes() / 2) {
    return Status::internal(what + ": not a batch of events");
  }
  const bool has_checkpoint = !stmt.getColumn(5).isNull();
  const int64_t checkpoint_seq = integer(stmt, 5);
  const int64_t stored_time = integer(stmt, 3);
  const int64_t first_time = first_seq == 1 ? stored_time : wrapping_add(stored_time, time_base);
  ValueUnpacker reader(std::string_view(static_cast<const char*>(data.getBlob()), static_cast<size_t>(data.getBytes())));
  auto corrupt = [&](int64_t index, const std::string& why) {
    return Status::internal(what + ": event " + std::to_string(first_seq + index) + ": " + why);
  };
  for (int64_t i = 0; i < count; ++i) {
    RowEvent row;
    row.event.run_id = run_id;
    row.event.seq = first_seq + i;
    unsigned char code = 0;
    unsigned char flags = 0;
    if (!reader.read_byte(&code)) return corrupt(i, "truncated");
    if (code == 0) {
      uint64_t size = 0;
      if (!reader.read_varint(&size) || size > static_cast<uint64_t>(data.getBytes())) return corrupt(i, "bad kind");
      row.event.kind.resize(static_cast<size_t>(size));
      for (char& c : row.event.kind) {
        unsigned char b = 0;
        if (!reader.read_byte(&b)) return corrupt(i, "truncated kind");
        c = static_cast<char>(b);
      }
    } else if (code > kKindCodeCount) {
      return corrupt(i, "unknown kind code " + std::to_string(code));
    } else {
      row.event.kind = kKindCodes[code - 1];
    }
    if (!reader.read_byte(&flags) || (flags & ~(kFormBits | kHasTime)) != 0) return corrupt(i, "bad flags");
    row.form = static_cast<EventForm>(flags & kFormBits);
    if (row.form != EventForm::kWhole && !has_checkpoint) return corrupt(i, "derived without a checkpoint");
    row.checkpoint_seq = checkpoint_seq;
    int64_t delta = 0;
    if ((flags & kHasTime) != 0) {
      uint64_t z = 0;
      if (!reader.read_varint(&z)) return corrupt(i, "truncated time");
      delta = unzigzag(z);
    }
    row.event.created_at_ms = wrapping_add(first_time, delta);
    if (row.form == EventForm::kWhole || row.form == EventForm::kWithoutState) {
      Status status = reader.unpack(&row.event.data);
      if (!status.ok()) return corrupt(i, status.message());
    }
    out->push_back(std::move(row));
  }
  if (!reader.at_end()) return Status::internal(what + ": bytes after its last event");
  return Status();
}

}  // namespace

Status read_event_row(const SQLite::Statement& stmt, const std::string& run_id, int64_t time_base,
                      std::vector<RowEvent>* out) {
  if (integer(stmt, 4) == kBatchRowForm) return read_event_batch(stmt, run_id, time_base, out);
  RowEvent row;
  ORCH_ASSIGN_OR_RETURN(row.event, read_event(stmt, run_id, time_base, &row.form, &row.checkpoint_seq));
  out->push_back(std::move(row));
  return Status();
}

void bind_pending_write(SQLite::Statement& stmt, const PendingWrite& write) {
  bind_field(stmt, 1, write.run_id);
  stmt.bind(2, write.superstep);
  bind_field(stmt, 3, write.node_name);
  bind_json(stmt, 4, write.result);
}

Result<PendingWrite> read_pending_write(const SQLite::Statement& stmt) {
  PendingWrite write;
  write.run_id = text(stmt, 0);
  write.superstep = integer(stmt, 1);
  write.node_name = text(stmt, 2);
  ORCH_ASSIGN_OR_RETURN(write.result,
                        read_json_column(stmt, 3, "pending write of run " + write.run_id));
  return write;
}

void bind_workflow(SQLite::Statement& stmt, const WorkflowRecord& workflow) {
  stmt.bind(1, workflow.id);
  stmt.bind(2, workflow.name);
  stmt.bind(3, workflow.version);
  bind_json(stmt, 4, workflow.definition);
  stmt.bind(5, workflow.created_at_ms);
  stmt.bind(6, workflow.updated_at_ms);
}

Result<WorkflowRecord> read_workflow(const SQLite::Statement& stmt) {
  WorkflowRecord workflow;
  workflow.id = text(stmt, 0);
  workflow.name = text(stmt, 1);
  workflow.version = integer(stmt, 2);
  ORCH_ASSIGN_OR_RETURN(workflow.definition, read_json_column(stmt, 3, "workflow " + workflow.id));
  workflow.created_at_ms = integer(stmt, 4);
  workflow.updated_at_ms = integer(stmt, 5);
  return workflow;
}

}  // namespace orch::sqlite
