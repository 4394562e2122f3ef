// SPDX-License-Identifier: MIT
// The SQLite Store: opening, runs, leases, pending writes, steps, events and
// workflows. Checkpoints are in sqlite_store_checkpoints.cc.
//
// Heavy statements are bound (which encodes their JSON) before the write
// transaction starts, so the writer lock covers only SQLite's own work.
#include "orch/sqlite_store.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "store/sqlite/sqlite_definitions.h"
#include "store/sqlite/sqlite_packed_value.h"
#include "store/sqlite/sqlite_rows.h"
#include "store/sqlite/sqlite_schema.h"
#include "store/sqlite/sqlite_store_impl.h"

#include <fcntl.h>
#include <unistd.h>
#include "store/sqlite/sqlite_store_testing.h"

namespace orch::sqlite {

Status run_not_found(const std::string& run_id) {
  return Status::not_found("run " + run_id + " not found");
}

namespace {

int64_t clamp_to_int64(size_t n) {
  return n > static_cast<size_t>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max()
             : static_cast<int64_t>(n);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <typename T, typename Reader>
Result<std::vector<T>> read_all(Query& q, Reader read) {
  std::vector<T> out;
  while (q->executeStep()) {
    ORCH_ASSIGN_OR_RETURN(T record, read(*q));
    out.push_back(std::move(record));
  }
  return out;
}

// The log's checkpoint threshold in bytes of pages: wal_checkpoint_pages
// counts pages of 4 KiB whatever the file's own page size.
int64_t wal_threshold_bytes(const SqliteStoreOptions& options) {
  return int64_t{std::max(1, options.wal_checkpoint_pages)} * 4096;
}
}  // namespace

SqliteStore::SqliteStore(const std::string& path, const SqliteStoreOptions& options, bool in_memory)
    : options_(options),
      checkpointer_(in_memory ? nullptr
                              : std::make_unique<WalCheckpointer>(path, options.busy_timeout_ms,
                                                                  wal_threshold_bytes(options), &writer_mu_)),
      pool_(path, options.busy_timeout_ms, options.max_idle_connections, in_memory, [this](Connection& conn) {
        configure_connection(conn, options_.page_size);
        // A log that grew past its checkpoint size (a reader held it) is cut
        // back to that size when it starts over, instead of keeping its peak
        // size on disk for good. A frame is a page plus a 24-byte header.
        const int page_size = conn.db().execAndGet("PRAGMA page_size").getInt();
        const int64_t frames = WalCheckpointer::frames_for(wal_threshold_bytes(options_), page_size);
        const int64_t log_bytes = frames * (page_size + 24) + 32;
        conn.db().exec("PRAGMA journal_size_limit = " + std::to_string(log_bytes));
        if (checkpointer_) checkpointer_->attach(conn);
      }),
      cache_(options.cached_runs) {}

Result<std::shared_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       const SqliteStoreOptions& options) {
  if (path.empty()) return Status::invalid_argument("open_sqlite_store: empty path");
  if (options.busy_timeout_ms < 0)
    return Status::invalid_argument("open_sqlite_store: negative busy_timeout_ms");
  const int page_size = options.page_size;
  if (page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0)
    return Status::invalid_argument("open_sqlite_store: page_size " + std::to_string(page_size) +
                                    " is not a power of two from 512 to 65536");
  const bool in_memory = path == ":memory:";
  if (!in_memory && path.rfind("file:", 0) != 0) {
    // The database holds worker tokens and callback secrets: a new file is
    // readable by its owner only (SQLite gives its -wal and -shm files the
    // same mode).
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
  }
  std::shared_ptr<SqliteStore> store(new SqliteStore(path, options, in_memory));
  try {
    ConnectionPool::Lease conn = store->pool_.acquire();
    ORCH_RETURN_IF_ERROR(migrate_schema(*conn, in_memory));
  } catch (const SQLite::Exception& e) {
    return status_from_exception(e, "opening " + path);
  }
  return store;
}

Result<bool> SqliteStore::run_exists(Connection& conn, const std::string& run_id) {
  Query q(conn, "SELECT 1 FROM runs WHERE id = ?1");
  q->bind(1, run_id);
  return q->executeStep();
}

Result<int64_t> SqliteStore::run_pk(Connection& conn, const std::string& run_id) {
  Query q(conn, "SELECT pk FROM runs WHERE id = ?1");
  q->bind(1, run_id);
  if (!q->executeStep()) return run_not_found(run_id);
  return q->getColumn(0).getInt64();
}

// ---- Runs -------------------------------------------------------------------

namespace {

// When a lease taken at `now` for `lease_ms` runs out (saturating).
int64_t lease_expiry(int64_t now, int64_t lease_ms) {
  return lease_ms > std::numeric_limits<int64_t>::max() - now ? std::numeric_limits<int64_t>::max()
                                                               : now + lease_ms;
}

}  // namespace

Status SqliteStore::create_run(const RunRecord& run) { return insert_run(run, nullptr, 0); }

Status SqliteStore::create_claimed_run(const RunRecord& run, const std::string& owner, int64_t lease_ms) {
  // One transaction (one commit) instead of two.
  return insert_run(run, &owner, lease_ms);
}

Status SqliteStore::insert_run(const RunRecord& run, const std::string* owner, int64_t lease_ms) {
  const EncodedDefinition definition = encode_definition(run.workflow);
  return with_writer("create_run", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_);
    ORCH_RETURN_IF_ERROR(insert_run_rows(conn, run, owner, lease_ms, &definition));
    txn.commit();
    return Status();
  });
}

Status SqliteStore::insert_run_rows(Connection& conn, const RunRecord& run, const std::string* owner, int64_t lease_ms,
                                    const EncodedDefinition* encoded) {
  // The definition is hashed before the writer's lock when the caller can.
  std::optional<EncodedDefinition> local;
  if (encoded == nullptr) encoded = &local.emplace(encode_definition(run.workflow));
  Query insert(conn, run_insert_sql());
  bind_run(*insert, run);
  ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run.id));
  if (exists) return Status::already_exists("run " + run.id + " already exists");
  if (!run.idempotency_key.empty()) {
    Query q(conn, "SELECT id FROM runs WHERE idempotency_key = ?1");
    q->bind(1, run.idempotency_key);
    // The contract: the message is the id of the run that holds the key.
    if (q->executeStep()) return Status::already_exists(q->getColumn(0).getString());
  }
  insert->bind(kRunColumns.count + 1, store_definition(conn, *encoded));
  insert->exec();
  if (owner != nullptr) {
    // A claimed run starts at epoch 1 (Store::claim_run_lease).
    Query claim(conn,
                "UPDATE runs SET lease_owner = ?2, lease_expires_at_ms = ?3, "
                "lease_epoch = CASE WHEN ?2 = '' THEN 0 ELSE 1 END WHERE id = ?1");
    claim->bind(1, run.id);
    claim->bind(2, *owner);
    claim->bind(3, lease_expiry(now_ms(), lease_ms));
    claim->exec();
  }
  return Status();
}

Status SqliteStore::update_run(const RunRecord& run) {
  const EncodedDefinition definition = encode_definition(run.workflow);
  return with_writer("update_run", [&](Connection& conn) -> Status {
    Query update(conn, run_update_sql());
    bind_run(*update, run);
    WriteTransaction txn(conn, writer_mu_);
    update->bind(kRunColumns.count + 1, store_definition(conn, definition));
    if (update->exec() == 0) return run_not_found(run.id);
    txn.commit();
    if (is_terminal(run.status)) forget_document(run.id);
    return Status();
  });
}

Result<RunRecord> SqliteStore::get_run(const std::string& run_id) {
  return with_connection("get_run", [&](Connection& conn) -> Result<RunRecord> {
    static const std::string kSelect =
        "SELECT " + run_select_list() + " FROM runs WHERE id = ?1";
    Query q(conn, kSelect);
    q->bind(1, run_id);
    if (!q->executeStep()) return run_not_found(run_id);
    ORCH_ASSIGN_OR_RETURN(RunRecord run, read_run(*q));
    q->reset();
    ORCH_RETURN_IF_ERROR(resolve_state(conn, &run));
    return run;
  });
}

Result<RunRecord> SqliteStore::find_run_by_idempotency_key(const std::string& key) {
  return with_connection("find_run_by_idempotency_key", [&](Connection& conn) -> Result<RunRecord> {
    static const std::string kSelect =
        "SELECT " + run_select_list() + " FROM runs WHERE idempotency_key = ?1";
    Query q(conn, kSelect);
    q->bind(1, key);
    if (key.empty() || !q->executeStep())
      return Status::not_found("no run with idempotency key " + key);
    ORCH_ASSIGN_OR_RETURN(RunRecord run, read_run(*q));
    q->reset();
    ORCH_RETURN_IF_ERROR(resolve_state(conn, &run));
    return run;
  });
}

Result<std::vector<RunRecord>> SqliteStore::list_runs(const RunFilter& filter) {
  return with_connection("list_runs", [&](Connection& conn) -> Result<std::vector<RunRecord>> {
    // At most eight distinct texts, each prepared once per connection.
    std::string sql = "SELECT " + run_select_list() + " FROM runs WHERE 1";
    if (filter.status) sql += " AND status = ?3";
    if (!filter.workflow_id.empty()) sql += " AND workflow_id = ?4";
    if (!filter.parent_run_id.empty()) sql += " AND parent_run_id = ?5";
    sql += " ORDER BY pk DESC LIMIT ?1 OFFSET ?2";  // newest first
    Query q(conn, sql);
    q->bind(1, clamp_to_int64(filter.limit));
    q->bind(2, clamp_to_int64(filter.offset));
    if (filter.status) q->bind(3, std::string(run_status_name(*filter.status)));
    if (!filter.workflow_id.empty()) q->bind(4, filter.workflow_id);
    if (!filter.parent_run_id.empty()) q->bind(5, filter.parent_run_id);
    ORCH_ASSIGN_OR_RETURN(std::vector<RunRecord> runs, read_all<RunRecord>(q, read_run));
    q->reset();
    for (RunRecord& run : runs) ORCH_RETURN_IF_ERROR(resolve_state(conn, &run));
    return runs;
  });
}

Status SqliteStore::delete_run(const std::string& run_id) {
  Status status = with_writer("delete_run", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_);
    ORCH_ASSIGN_OR_RETURN(int64_t pk, run_pk(conn, run_id));
    int64_t definition_pk = 0;
    {
      Query q(conn, "SELECT definition_pk FROM runs WHERE pk = ?1");
      q->bind(1, pk);
      if (q->executeStep()) definition_pk = q->getColumn(0).getInt64();
    }
    for (const char* sql : {"DELETE FROM checkpoints WHERE run_pk = ?1", "DELETE FROM steps WHERE run_pk = ?1",
                            "DELETE FROM events WHERE run_pk = ?1", "DELETE FROM runs WHERE pk = ?1"}) {
      Query q(conn, sql);
      q->bind(1, pk);
      q->exec();
    }
    drop_definition_if_unused(conn, definition_pk);
    {
      Query q(conn, "DELETE FROM pending_writes WHERE run_id = ?1");
      q->bind(1, run_id);
      q->exec();
    }
    txn.commit();
    return Status();
  });
  forget_document(run_id);
  return status;
}

Status SqliteStore::claim_run(const std::string& run_id, const std::string& owner,
                              int64_t lease_ms) {
  return claim_run_lease(run_id, owner, lease_ms).status();
}

Result<int64_t> SqliteStore::claim_run_lease(const std::string& run_id, const std::string& owner, int64_t lease_ms) {
  return with_writer("claim_run", [&](Connection& conn) -> Result<int64_t> {
    const int64_t now = now_ms();
    WriteTransaction txn(conn, writer_mu_);
    // One statement decides: free, ours already, expired, or the run has
    // ended; a run changing hands gets the next epoch (the previous owner's
    // fenced writes fail).
    Query claim(conn,
                "UPDATE runs SET lease_epoch = CASE WHEN lease_owner = ?2 THEN lease_epoch ELSE lease_epoch + 1 END, "
                "lease_owner = ?2, lease_expires_at_ms = ?3 WHERE id = ?1 AND "
                "(lease_owner = '' OR lease_owner = ?2 OR lease_expires_at_ms <= ?4 OR "
                "status IN ('completed', 'failed', 'cancelled')) RETURNING lease_epoch");
    claim->bind(1, run_id);
    claim->bind(2, owner);
    claim->bind(3, lease_expiry(now, lease_ms));
    claim->bind(4, now);
    if (!claim->executeStep()) {
      claim->reset();
      Query q(conn, "SELECT lease_owner FROM runs WHERE id = ?1");
      q->bind(1, run_id);
      if (!q->executeStep()) return run_not_found(run_id);
      return Status::aborted("run " + run_id + " is leased by " + q->getColumn(0).getString());
    }
    const int64_t epoch = claim->getColumn(0).getInt64();
    claim->reset();
    txn.commit();
    return epoch;
  });
}

Status SqliteStore::fence(Connection& conn, const std::string& run_id, const std::string& owner, int64_t epoch) {
  Result<RunCounters> counters = read_run_counters(conn, run_id);
  if (!counters.ok()) return run_not_found(run_id);
  return fence(*counters, run_id, owner, epoch);
}

Status SqliteStore::fence(const RunCounters& held, const std::string& run_id, const std::string& owner, int64_t epoch) {
  if (held.lease_owner == owner && held.lease_epoch == epoch) return Status();
  return lease_lost_status(run_id, "is held by '" + held.lease_owner + "' at epoch " +
                                       std::to_string(held.lease_epoch) + ", not by '" + owner + "' at epoch " +
                                       std::to_string(epoch));
}

Status SqliteStore::check_lease(const std::string& run_id, const std::string& owner, int64_t epoch) {
  return with_connection("check_lease", [&](Connection& conn) -> Status { return fence(conn, run_id, owner, epoch); });
}

Result<int64_t> SqliteStore::renew_leases(const std::string& owner, int64_t lease_ms) {
  if (owner.empty()) return int64_t{0};
  return with_writer("renew_leases", [&](Connection& conn) -> Result<int64_t> {
    WriteTransaction txn(conn, writer_mu_);
    Query renew(conn,
                "UPDATE runs SET lease_expires_at_ms = ?2 WHERE lease_owner = ?1 AND "
                "status NOT IN ('completed', 'failed', 'cancelled')");
    renew->bind(1, owner);
    renew->bind(2, lease_expiry(now_ms(), lease_ms));
    const int64_t renewed = renew->exec();
    txn.commit();
    return renewed;
  });
}

Result<std::vector<std::string>> SqliteStore::list_expired_leases(size_t limit) {
  return with_connection("list_expired_leases", [&](Connection& conn) -> Result<std::vector<std::string>> {
    Query q(conn,
            "SELECT id FROM runs WHERE status = 'running' AND parent_run_id = '' AND lease_expires_at_ms <= ?2 "
            "ORDER BY pk LIMIT ?1");
    q->bind(1, clamp_to_int64(limit));
    q->bind(2, now_ms());
    std::vector<std::string> ids;
    while (q->executeStep()) ids.push_back(q->getColumn(0).getString());
    return ids;
  });
}

// ---- Pending writes -----------------------------------------------------------

Status SqliteStore::put_pending_write(const PendingWrite& write) {
  return with_writer("put_pending_write", [&](Connection& conn) -> Status {
    static const std::string kInsert = kPendingWriteColumns.insert_sql();
    Query insert(conn, kInsert);
    bind_pending_write(*insert, write);
    WriteTransaction txn(conn, writer_mu_);
    ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, write.run_id));
    if (!exists) return run_not_found(write.run_id);
    insert->exec();
    txn.commit();
    return Status();
  });
}

Result<std::vector<PendingWrite>> SqliteStore::list_pending_writes(const std::string& run_id) {
  return with_connection(
      "list_pending_writes", [&](Connection& conn) -> Result<std::vector<PendingWrite>> {
        static const std::string kSelect = "SELECT " + kPendingWriteColumns.select_list() +
                                           " FROM pending_writes WHERE run_id = ?1 ORDER BY pk";
        ReadTransaction txn(conn);
        ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run_id));
        if (!exists) return run_not_found(run_id);
        Query q(conn, kSelect);
        q->bind(1, run_id);
        return read_all<PendingWrite>(q, read_pending_write);
      });
}

// ---- Steps ----------------------------------------------------------------------

Status SqliteStore::put_step(const StepRecord& step) {
  return with_writer("put_step", [&](Connection& conn) -> Status {
    static const std::string kUpsert = kStepColumns.upsert_sql();
    Query upsert(conn, kUpsert);
    bind_step(*upsert, step);
    WriteTransaction txn(conn, writer_mu_);
    ORCH_ASSIGN_OR_RETURN(int64_t pk, run_pk(conn, step.run_id));
    upsert->bind(kStepColumns.count + 1, pk);
    upsert->exec();
    txn.commit();
    return Status();
  });
}

Result<StepRecord> SqliteStore::get_step(const std::string& step_id) {
  return with_connection("get_step", [&](Connection& conn) -> Result<StepRecord> {
    static const std::string kSelect =
        "SELECT " + step_select_list() + " FROM steps WHERE id = ?1";
    Query q(conn, kSelect);
    bind_id(*q, 1, step_id);
    if (!q->executeStep()) return Status::not_found("step " + step_id + " not found");
    return read_step(*q);
  });
}

Result<std::vector<StepRecord>> SqliteStore::list_steps(const std::string& run_id) {
  return with_connection("list_steps", [&](Connection& conn) -> Result<std::vector<StepRecord>> {
    static const std::string kSelect =
        "SELECT " + step_select_list() + " FROM steps WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) ORDER BY pk";
    ReadTransaction txn(conn);
    ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run_id));
    if (!exists) return run_not_found(run_id);
    Query q(conn, kSelect);
    q->bind(1, run_id);
    return read_all<StepRecord>(q, read_step);
  });
}

// ---- Events ---------------------------------------------------------------------

Result<int64_t> SqliteStore::append_event(EventRecord event) {
  const StoredEvent stored = encode_event(event, nullptr);
  return with_writer("append_event", [&](Connection& conn) -> Result<int64_t> {
    WriteTransaction txn(conn, writer_mu_);
    // The run row holds the counter: one statement checks the run exists and
    // takes the next seq, and writers are serialized, so seqs have no gaps.
    int64_t seq = 0;
    int64_t pk = 0;
    {
      Query next(conn,
                 "UPDATE runs SET last_event_seq = last_event_seq + 1 WHERE id = ?1 RETURNING "
                 "last_event_seq, pk");
      next->bind(1, event.run_id);
      if (!next->executeStep()) return run_not_found(event.run_id);
      seq = next->getColumn(0).getInt64();
      pk = next->getColumn(1).getInt64();
    }
    const int64_t time_base = seq == 1 ? event.created_at_ms : event_time_base(conn, pk);
    Query insert(conn, kEventInsertSql);
    bind_event(*insert, pk, seq, event, stored, 0, time_base);
    insert->exec();
    txn.commit();
    return seq;
  });
}

Result<std::vector<EventRecord>> SqliteStore::list_events(const std::string& run_id,
                                                          int64_t after_seq, size_t limit) {
  return with_connection("list_events", [&](Connection& conn) -> Result<std::vector<EventRecord>> {
    // From the row holding after_seq (a batch row may hold later events too,
    // sqlite_rows.h), or the first: each row holds at least one event, so
    // limit + 1 rows hold `limit` events after after_seq if there are as many.
    static const std::string kSelect =
        std::string("SELECT ") + kEventSelectList +
        " FROM events WHERE run_pk = ?1 AND seq >= COALESCE((SELECT MAX(seq) FROM events WHERE run_pk = ?1 AND seq <= ?2), 0)"
        " ORDER BY seq LIMIT ?3";
    ReadTransaction txn(conn);
    ORCH_ASSIGN_OR_RETURN(int64_t pk, run_pk(conn, run_id));
    Query q(conn, kSelect);
    q->bind(1, pk);
    q->bind(2, after_seq);
    const int64_t rows = clamp_to_int64(limit);
    q->bind(3, rows == std::numeric_limits<int64_t>::max() ? rows : rows + 1);
    std::vector<RowEvent> read;
    int64_t time_base = 0;
    bool have_time_base = false;
    while (q->executeStep() && read.size() < limit) {
      if (!have_time_base) {
        time_base = event_time_base(conn, pk);
        have_time_base = true;
      }
      const size_t before = read.size();
      ORCH_RETURN_IF_ERROR(read_event_row(*q, run_id, time_base, &read));
      // Drop what precedes after_seq in the first row, and beyond the limit.
      size_t keep = before;
      for (size_t i = before; i < read.size(); ++i) {
        if (read[i].event.seq <= after_seq || keep >= limit) continue;
        if (keep != i) read[keep] = std::move(read[i]);
        ++keep;
      }
      read.resize(keep);
    }
    q->reset();
    std::vector<EventRecord> events;
    events.reserve(read.size());
    // Consecutive events usually name the same checkpoint: read it once.
    Checkpoint checkpoint;
    int64_t loaded_seq = -1;
    for (RowEvent& row : read) {
      if (row.form != EventForm::kWhole) {
        if (loaded_seq < 0 || loaded_seq != row.checkpoint_seq) {
          ORCH_ASSIGN_OR_RETURN(checkpoint, checkpoint_at(conn, pk, row.checkpoint_seq, row.event.seq));
          loaded_seq = row.checkpoint_seq;
        }
        complete_event(&row.event, row.form, checkpoint);
      }
      events.push_back(std::move(row.event));
    }
    return events;
  });
}

// ---- Workflows ------------------------------------------------------------------

Status SqliteStore::put_workflow(const WorkflowRecord& workflow, bool create_only) {
  return with_writer("put_workflow", [&](Connection& conn) -> Status {
    static const std::string kInsert = kWorkflowColumns.insert_sql();
    static const std::string kUpsert = kWorkflowColumns.upsert_sql();
    Query write(conn, create_only ? kInsert : kUpsert);
    bind_workflow(*write, workflow);
    WriteTransaction txn(conn, writer_mu_);
    if (create_only) {
      Query q(conn, "SELECT 1 FROM workflows WHERE id = ?1");
      q->bind(1, workflow.id);
      if (q->executeStep())
        return Status::already_exists("workflow " + workflow.id + " already exists");
    }
    write->exec();
    txn.commit();
    return Status();
  });
}

Result<WorkflowRecord> SqliteStore::get_workflow(const std::string& id) {
  return with_connection("get_workflow", [&](Connection& conn) -> Result<WorkflowRecord> {
    static const std::string kSelect =
        "SELECT " + kWorkflowColumns.select_list() + " FROM workflows WHERE id = ?1";
    Query q(conn, kSelect);
    q->bind(1, id);
    if (!q->executeStep()) return Status::not_found("workflow " + id + " not found");
    return read_workflow(*q);
  });
}

Result<std::vector<WorkflowRecord>> SqliteStore::list_workflows() {
  return with_connection(
      "list_workflows", [&](Connection& conn) -> Result<std::vector<WorkflowRecord>> {
        static const std::string kSelect =
            "SELECT " + kWorkflowColumns.select_list() + " FROM workflows ORDER BY pk";
        Query q(conn, kSelect);
        return read_all<WorkflowRecord>(q, read_workflow);
      });
}

Status SqliteStore::delete_workflow(const std::string& id) {
  return with_writer("delete_workflow", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_);
    Query q(conn, "DELETE FROM workflows WHERE id = ?1");
    q->bind(1, id);
    if (q->exec() == 0) return Status::not_found("workflow " + id + " not found");
    txn.commit();
    return Status();
  });
}

// ---- Host records ---------------------------------------------------------------

Status SqliteStore::put_host_record(const std::string& collection, const std::string& id, const Value& record) {
  return with_writer("put_host_record", [&](Connection& conn) -> Status {
    Query q(conn,
            "INSERT INTO host_records (collection, id, record) VALUES (?1, ?2, ?3) "
            "ON CONFLICT (collection, id) DO UPDATE SET record = excluded.record");
    q->bind(1, collection);
    q->bind(2, id);
    q->bind(3, record.to_json());
    WriteTransaction txn(conn, writer_mu_);
    q->exec();
    txn.commit();
    return Status();
  });
}

Status SqliteStore::delete_host_record(const std::string& collection, const std::string& id) {
  return with_writer("delete_host_record", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_);
    Query q(conn, "DELETE FROM host_records WHERE collection = ?1 AND id = ?2");
    q->bind(1, collection);
    q->bind(2, id);
    if (q->exec() == 0) return Status::not_found(collection + " record " + id + " not found");
    txn.commit();
    return Status();
  });
}

Result<std::vector<Value>> SqliteStore::list_host_records(const std::string& collection) {
  return with_connection("list_host_records", [&](Connection& conn) -> Result<std::vector<Value>> {
    Query q(conn, "SELECT id, record FROM host_records WHERE collection = ?1 ORDER BY pk");
    q->bind(1, collection);
    std::vector<Value> out;
    while (q->executeStep()) {
      auto v = parse_json(q->getColumn(1).getString());
      if (!v.ok()) {
        return Status::internal(collection + " record " + q->getColumn(0).getString() +
                                " is damaged: " + v.status().message());
      }
      out.push_back(std::move(v).value());
    }
    return out;
  });
}

// ---- Diagnostics ----------------------------------------------------------------

Result<int64_t> SqliteStore::checkpoint_bytes(const std::string& run_id) {
  return with_connection("checkpoint_bytes", [&](Connection& conn) -> Result<int64_t> {
    ReadTransaction txn(conn);
    ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run_id));
    if (!exists) return run_not_found(run_id);
    Query q(
        conn,
        "SELECT COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1)");
    q->bind(1, run_id);
    q->executeStep();
    return q->getColumn(0).getInt64();
  });
}

Status SqliteStore::execute_for_testing(const std::string& sql) {
  Status status = with_connection("execute_for_testing", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_);
    register_packed_value_functions(conn);  // orch_unpack_json, to turn a file back into schema 8
    conn.db().exec(sql);
    txn.commit();
    return Status();
  });
  // The rows may no longer match what the cache remembers.
  cache_.clear();
  return status;
}

size_t SqliteStore::cached_documents_for_testing() {
  return cache_.size();
}

Result<int64_t> SqliteStore::query_int_for_testing(const std::string& sql) {
  return with_connection("query_int_for_testing", [&](Connection& conn) -> Result<int64_t> {
    ReadTransaction txn(conn);
    Query q(conn, sql);
    if (!q->executeStep()) return Status::not_found("no row: " + sql);
    return q->getColumn(0).getInt64();
  });
}

}  // namespace orch::sqlite

namespace orch {

Result<std::shared_ptr<Store>> open_sqlite_store(const std::string& path,
                                                 const SqliteStoreOptions& options) {
  ORCH_ASSIGN_OR_RETURN(std::shared_ptr<sqlite::SqliteStore> store,
                        sqlite::SqliteStore::open(path, options));
  return std::shared_ptr<Store>(std::move(store));
}

int sqlite_store_schema_version() { return sqlite::latest_schema_version(); }

Result<int64_t> sqlite_checkpoint_bytes(Store& store, const std::string& run_id) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_checkpoint_bytes: not a SQLite store");
  return sqlite_store->checkpoint_bytes(run_id);
}

Status sqlite_execute_for_testing(Store& store, const std::string& sql) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_execute_for_testing: not a SQLite store");
  return sqlite_store->execute_for_testing(sql);
}

Result<int64_t> sqlite_query_int_for_testing(Store& store, const std::string& sql) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_query_int_for_testing: not a SQLite store");
  return sqlite_store->query_int_for_testing(sql);
}

Result<int64_t> sqlite_wal_checkpoints_for_testing(Store& store) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_wal_checkpoints_for_testing: not a SQLite store");
  return sqlite_store->wal_checkpoints_for_testing();
}

Result<std::vector<std::string>> sqlite_full_scans_for_testing(Store& store) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_full_scans_for_testing: not a SQLite store");
  return sqlite_store->full_scans_for_testing();
}

Status sqlite_batch_events_for_testing(Store& store, bool on) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_batch_events_for_testing: not a SQLite store");
  sqlite_store->set_batch_events_for_testing(on);
  return Status();
}

Result<int64_t> sqlite_cached_documents_for_testing(Store& store) {
  auto* sqlite_store = dynamic_cast<sqlite::SqliteStore*>(&store);
  if (sqlite_store == nullptr)
    return Status::invalid_argument("sqlite_cached_documents_for_testing: not a SQLite store");
  return static_cast<int64_t>(sqlite_store->cached_documents_for_testing());
}

}  // namespace orch
