// SPDX-License-Identifier: MIT
// The PostgreSQL Store: pending writes, steps, events, workflows and host
// records. Rows a run owns are inserted with INSERT ... SELECT from its row,
// so "no such run" is "no row inserted", in the same statement.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "store/postgres/pg_event_rows.h"
#include "store/postgres/pg_rows.h"
#include "store/postgres/pg_store_impl.h"

namespace orch::postgres {
namespace {

template <typename T, typename Reader>
Result<std::vector<T>> read_all(const Rows& rows, Reader read) {
  std::vector<T> out;
  out.reserve(static_cast<size_t>(rows.count()));
  for (int i = 0; i < rows.count(); ++i) {
    ORCH_ASSIGN_OR_RETURN(T record, read(rows, i, 0));
    out.push_back(std::move(record));
  }
  return out;
}

int64_t clamp_size(size_t n) { return static_cast<int64_t>(std::min(n, static_cast<size_t>(INT64_MAX))); }

}  // namespace

// ---- Pending writes -----------------------------------------------------------

Status PostgresStore::put_pending_write(const PendingWrite& write) {
  Params params;
  add_pending_write(params, write);
  return with_connection("put_pending_write", [&](Connection& conn) -> Status {
    ORCH_ASSIGN_OR_RETURN(Rows inserted, conn.exec("put_pending_write", pending_write_insert_sql(), params));
    return inserted.affected() > 0 ? Status() : run_not_found(write.run_id);
  });
}

Result<std::vector<PendingWrite>> PostgresStore::list_pending_writes(const std::string& run_id) {
  return with_connection("list_pending_writes", [&](Connection& conn) -> Result<std::vector<PendingWrite>> {
    static const std::string kSelect = "SELECT " + kPendingWriteColumns.select_list() +
                                       " FROM pending_writes WHERE run_pk = (SELECT pk FROM runs WHERE id = $1) "
                                       "ORDER BY pk";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_pending_writes", kSelect, Params().text(run_id)));
    if (rows.count() == 0) ORCH_RETURN_IF_ERROR(check_run_exists(conn, run_id));
    return read_all<PendingWrite>(rows, read_pending_write);
  });
}

// ---- Steps ----------------------------------------------------------------------

Status PostgresStore::put_step(const StepRecord& step) {
  Params params;
  add_step(params, step);
  return with_connection("put_step", [&](Connection& conn) -> Status {
    ORCH_ASSIGN_OR_RETURN(Rows written, conn.exec("put_step", step_upsert_sql(), params));
    return written.affected() > 0 ? Status() : run_not_found(step.run_id);
  });
}

Result<StepRecord> PostgresStore::get_step(const std::string& step_id) {
  return with_connection("get_step", [&](Connection& conn) -> Result<StepRecord> {
    static const std::string kSelect = "SELECT " + kStepColumns.select_list() + " FROM steps WHERE id = $1";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("get_step", kSelect, Params().text(step_id)));
    if (rows.count() == 0) return Status::not_found("step " + step_id + " not found");
    return read_step(rows, 0);
  });
}

Result<std::vector<StepRecord>> PostgresStore::list_steps(const std::string& run_id) {
  return with_connection("list_steps", [&](Connection& conn) -> Result<std::vector<StepRecord>> {
    static const std::string kSelect = "SELECT " + kStepColumns.select_list() +
                                       " FROM steps WHERE run_pk = (SELECT pk FROM runs WHERE id = $1) ORDER BY pk";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_steps", kSelect, Params().text(run_id)));
    if (rows.count() == 0) ORCH_RETURN_IF_ERROR(check_run_exists(conn, run_id));
    return read_all<StepRecord>(rows, read_step);
  });
}

// ---- Events ---------------------------------------------------------------------

Result<int64_t> PostgresStore::append_event(EventRecord event) {
  Params params = event_append_params(event.run_id, {event});
  return with_connection("append_event", [&](Connection& conn) -> Result<int64_t> {
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("append_event", event_append_sql(announces(event.run_id)), params));
    if (rows.count() == 0) return run_not_found(event.run_id);
    return rows.integer(0, 0);
  });
}

Result<std::vector<EventRecord>> PostgresStore::list_events(const std::string& run_id, int64_t after_seq,
                                                            size_t limit) {
  return with_connection("list_events", [&](Connection& conn) -> Result<std::vector<EventRecord>> {
    // A row holds one or more events (pg_event_rows.h), the last at
    // last_seq: the rows with events after `after_seq` are those ending after
    // it (the first may start at or before it), and `limit` rows hold at
    // least `limit` events.
    static const std::string kSelect = std::string("SELECT ") + kEventSelectList +
                                       " FROM events WHERE run_pk = (SELECT pk FROM runs WHERE id = $1) AND "
                                       "last_seq > $2 ORDER BY last_seq LIMIT $3";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_events", kSelect,
                                               Params().text(run_id).integer(after_seq).integer(clamp_size(limit))));
    if (rows.count() == 0) ORCH_RETURN_IF_ERROR(check_run_exists(conn, run_id));
    std::vector<EventRecord> events;
    std::vector<StoredEvent> stored;
    for (int i = 0; i < rows.count() && events.size() < limit; ++i) {
      stored.clear();
      ORCH_RETURN_IF_ERROR(read_event_row(rows, i, 0, run_id, &stored));
      for (StoredEvent& one : stored) {
        if (one.event.seq <= after_seq) continue;
        if (events.size() >= limit) break;
        // Stored without its state: the checkpoint it names has it.
        if (one.without_state) {
          ORCH_ASSIGN_OR_RETURN(Value state, checkpoint_state(conn, run_id, one.state_checkpoint_id));
          one.event.data.set("state", std::move(state));
        }
        events.push_back(std::move(one.event));
      }
    }
    return events;
  });
}

// ---- Workflows ------------------------------------------------------------------

Status PostgresStore::put_workflow(const WorkflowRecord& workflow, bool create_only) {
  static const std::string kInsert = kWorkflowColumns.insert_sql() + " ON CONFLICT (id) DO NOTHING";
  static const std::string kUpsert = [] {
    std::string out = kWorkflowColumns.insert_sql() + " ON CONFLICT (id) DO UPDATE SET ";
    for (int i = 1; i < kWorkflowColumns.count; ++i) {
      out += std::string(i > 1 ? ", " : "") + kWorkflowColumns.columns[i] + " = EXCLUDED." +
             kWorkflowColumns.columns[i];
    }
    return out;
  }();
  Params params;
  add_workflow(params, workflow);
  return with_connection("put_workflow", [&](Connection& conn) -> Status {
    // The UNIQUE id decides, whichever instance writes first.
    ORCH_ASSIGN_OR_RETURN(Rows written, conn.exec("put_workflow", create_only ? kInsert : kUpsert, params));
    if (written.affected() == 0) return Status::already_exists("workflow " + workflow.id + " already exists");
    return Status();
  });
}

Result<WorkflowRecord> PostgresStore::get_workflow(const std::string& id) {
  return with_connection("get_workflow", [&](Connection& conn) -> Result<WorkflowRecord> {
    static const std::string kSelect = "SELECT " + kWorkflowColumns.select_list() + " FROM workflows WHERE id = $1";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("get_workflow", kSelect, Params().text(id)));
    if (rows.count() == 0) return Status::not_found("workflow " + id + " not found");
    return read_workflow(rows, 0);
  });
}

Result<std::vector<WorkflowRecord>> PostgresStore::list_workflows() {
  return with_connection("list_workflows", [&](Connection& conn) -> Result<std::vector<WorkflowRecord>> {
    static const std::string kSelect = "SELECT " + kWorkflowColumns.select_list() + " FROM workflows ORDER BY pk";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_workflows", kSelect));
    return read_all<WorkflowRecord>(rows, read_workflow);
  });
}

Status PostgresStore::delete_workflow(const std::string& id) {
  return with_connection("delete_workflow", [&](Connection& conn) -> Status {
    ORCH_ASSIGN_OR_RETURN(Rows deleted,
                          conn.exec("delete_workflow", "DELETE FROM workflows WHERE id = $1", Params().text(id)));
    return deleted.affected() > 0 ? Status() : Status::not_found("workflow " + id + " not found");
  });
}

// ---- Host records ---------------------------------------------------------------

Status PostgresStore::put_host_record(const std::string& collection, const std::string& id, const Value& record) {
  Params params;
  params.text(collection).text(id).text(record.to_json());
  return with_connection("put_host_record", [&](Connection& conn) -> Status {
    return conn
        .exec("put_host_record",
              "INSERT INTO host_records (collection, id, record) VALUES ($1, $2, $3) "
              "ON CONFLICT (collection, id) DO UPDATE SET record = EXCLUDED.record",
              params)
        .status();
  });
}

Status PostgresStore::delete_host_record(const std::string& collection, const std::string& id) {
  return with_connection("delete_host_record", [&](Connection& conn) -> Status {
    ORCH_ASSIGN_OR_RETURN(Rows deleted, conn.exec("delete_host_record",
                                                  "DELETE FROM host_records WHERE collection = $1 AND id = $2",
                                                  Params().text(collection).text(id)));
    return deleted.affected() > 0 ? Status() : Status::not_found(collection + " record " + id + " not found");
  });
}

Result<std::vector<Value>> PostgresStore::list_host_records(const std::string& collection) {
  return with_connection("list_host_records", [&](Connection& conn) -> Result<std::vector<Value>> {
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_host_records",
                                               "SELECT id, record FROM host_records WHERE collection = $1 ORDER BY pk",
                                               Params().text(collection)));
    std::vector<Value> out;
    out.reserve(static_cast<size_t>(rows.count()));
    for (int i = 0; i < rows.count(); ++i) {
      ORCH_ASSIGN_OR_RETURN(Value record, read_json(rows, i, 1, collection + " record " + rows.string(i, 0)));
      out.push_back(std::move(record));
    }
    return out;
  });
}

}  // namespace orch::postgres
