// SPDX-License-Identifier: MIT
// The PostgreSQL Store: opening, runs and leases. The rest is in
// pg_store_records.cc, pg_store_checkpoints.cc and pg_store_batches.cc.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "store/postgres/pg_rows.h"
#include "store/postgres/pg_schema.h"
#include "store/postgres/pg_store_impl.h"
#include "store/postgres/pg_change_watch.h"
#include "orch/id.h"

namespace orch::postgres {

Status run_not_found(const std::string& run_id) { return Status::not_found("run " + run_id + " not found"); }

namespace {

// The database's clock in milliseconds: every instance measures leases on it.
constexpr const char* kNowMs = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

// Lease lengths beyond a century are a century (the expiry stays in bigint).
int64_t bounded_lease(int64_t lease_ms) {
  constexpr int64_t kCentury = int64_t{100} * 366 * 24 * 3600 * 1000;
  return std::clamp<int64_t>(lease_ms, 0, kCentury);
}

int64_t clamp_size(size_t n) {
  constexpr size_t kMax = static_cast<size_t>(INT64_MAX);
  return static_cast<int64_t>(std::min(n, kMax));
}

Status check_options(const std::string& conninfo, const PostgresStoreOptions& o) {
  const std::string bad = "new_postgres_store: ";
  if (conninfo.find('\0') != std::string::npos) return Status::invalid_argument(bad + "the conninfo holds a NUL byte");
  if (o.schema.find('\0') != std::string::npos) return Status::invalid_argument(bad + "the schema holds a NUL byte");
  if (o.max_connections == 0) return Status::invalid_argument(bad + "max_connections must be at least 1");
  if (o.acquire_timeout_ms < 0 || o.connect_timeout_s < 0 || o.statement_timeout_ms < 0 || o.lock_timeout_ms < 0)
    return Status::invalid_argument(bad + "timeouts cannot be negative");
  if (o.max_delta_chain < 0) return Status::invalid_argument(bad + "max_delta_chain cannot be negative");
  return Status();
}

}  // namespace

PostgresStore::PostgresStore(const ConnectSettings& settings, const PostgresStoreOptions& options)
    : options_(options),
      settings_(settings),
      pool_(settings, options.max_connections, options.acquire_timeout_ms),
      cache_(options.cached_runs),
      group_writers_(std::clamp<size_t>(
          options.group_commit_writers > 0 ? options.group_commit_writers : options.max_connections / 2, 1,
          std::max<size_t>(options.max_connections, 1))) {}

Result<std::shared_ptr<PostgresStore>> PostgresStore::open(const std::string& conninfo,
                                                           const PostgresStoreOptions& options) {
  ORCH_RETURN_IF_ERROR(check_options(conninfo, options));
  ConnectSettings settings;
  settings.conninfo = conninfo;
  settings.connect_timeout_s = options.connect_timeout_s;
  settings.statement_timeout_ms = options.statement_timeout_ms;
  settings.lock_timeout_ms = options.lock_timeout_ms;
  settings.schema = options.schema;
  settings.synchronous_commit = !options.relaxed_unsynced_commits;
  std::shared_ptr<PostgresStore> store(new PostgresStore(settings, options));
  ORCH_RETURN_IF_ERROR(store->with_connection("opening the PostgreSQL store", [&](Connection& conn) -> Status {
    return migrate_schema(conn, options.schema);
  }));
  return store;
}

namespace {
// Follow records (pg_followers.h) compare times of different machines: wall time.
int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Result<std::unique_ptr<StoreWatch>> PostgresStore::watch_changes(std::function<void(const StoreChange&)> on_change) {
  // The trigger names the schema its table is in: the configured one, or
  // the one the server's search_path picks.
  std::string schema = options_.schema;
  if (schema.empty()) {
    ORCH_RETURN_IF_ERROR(with_connection("watch_changes", [&](Connection& conn) -> Status {
      ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("watch_changes", "SELECT current_schema()"));
      if (rows.count() == 0 || rows.is_null(0, 0)) return Status::failed_precondition("watch_changes: no current schema");
      schema = rows.string(0, 0);
      return Status();
    }));
  }
  const bool learns_follows = options_.announce_events && options_.announce_followed_only;
  std::weak_ptr<PostgresStore> weak = weak_from_this();
  if (learns_follows) {
    // Who follows which runs comes with the other changes, through this watch.
    on_change = [weak, on_change = std::move(on_change)](const StoreChange& change) {
      if (change.kind == StoreChange::Kind::kHostRecords && change.key == kFollowersCollection) {
        if (auto store = weak.lock()) store->reload_followed();
      }
      on_change(change);
    };
    followed_.watch_started();
  }
  auto stop = [weak, learns_follows] {
    if (!learns_follows) return;
    if (auto store = weak.lock()) store->followed_.watch_stopped();
  };
  // Follows announced while the watch's connection was down were not heard.
  std::function<void()> on_reconnect;
  if (learns_follows) {
    on_reconnect = [weak] {
      if (auto store = weak.lock()) store->reload_followed();
    };
  }
  auto watch = PgChangeWatch::start(settings_, schema, std::move(on_change), std::move(on_reconnect));
  if (!watch.ok()) {
    stop();
    return watch.status();
  }
  // Listening already: a follow written from now on is heard.
  if (learns_follows) reload_followed();
  auto publish = [weak, token = new_uuid()](const std::vector<std::string>& runs) {
    if (auto store = weak.lock()) store->publish_follows(token, runs);
  };
  return std::unique_ptr<StoreWatch>(
      std::make_unique<FollowingWatch>(std::move(watch).value(), std::move(publish), std::move(stop)));
}

void PostgresStore::reload_followed() {
  auto records = list_host_records(kFollowersCollection);
  if (!records.ok()) return;  // kept as it was; the next change reads again
  const int64_t now_ms = wall_clock_ms();
  for (const std::string& stale : followed_.replace(*records, now_ms)) {
    (void)delete_host_record(kFollowersCollection, stale);
  }
}

void PostgresStore::publish_follows(const std::string& token, const std::vector<std::string>& runs) {
  if (runs.empty()) {
    (void)delete_host_record(kFollowersCollection, token);  // not found: never written
    return;
  }
  Value list = Value::array();
  for (const std::string& run : runs) list.push_back(Value(run));
  // Best effort: without it the runs' readers still look every 500 ms.
  (void)put_host_record(kFollowersCollection, token,
                        Value::object({{"id", Value(token)},
                                       {"runs", std::move(list)},
                                       {"until_ms", Value(wall_clock_ms() + kFollowTtlMs)}}));
}

Result<bool> PostgresStore::run_exists(Connection& conn, const std::string& run_id) {
  ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("run_exists", "SELECT 1 FROM runs WHERE id = $1", Params().text(run_id)));
  return rows.count() > 0;
}

Status PostgresStore::check_run_exists(Connection& conn, const std::string& run_id) {
  ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run_id));
  return exists ? Status() : run_not_found(run_id);
}

// ---- Runs -------------------------------------------------------------------

Status PostgresStore::create_run(const RunRecord& run) { return insert_run(run, nullptr, 0); }

Status PostgresStore::create_claimed_run(const RunRecord& run, const std::string& owner, int64_t lease_ms) {
  // One statement (one commit) instead of two.
  return insert_run(run, &owner, lease_ms);
}

Command run_insert(const RunRecord& run, const std::string* owner, int64_t lease_ms, bool conflict_fails) {
  auto build = [](bool fails) {
    std::string values;
    for (int i = 1; i <= kRunColumns.count; ++i) values += "$" + std::to_string(i) + ", ";
    const std::string owner_param = "$" + std::to_string(kRunColumns.count + 1);
    const std::string lease = "$" + std::to_string(kRunColumns.count + 2);
    // A claimed run starts at epoch 1 (Store::claim_run_lease).
    return "INSERT INTO runs (" + kRunColumns.select_list() + ", lease_owner, lease_expires_at_ms, lease_epoch) VALUES (" +
           values + owner_param + ", CASE WHEN " + owner_param + " = '' THEN 0 ELSE " + kNowMs + " + " + lease +
           "::bigint END, CASE WHEN " + owner_param + " = '' THEN 0 ELSE 1 END)" +
           (fails ? "" : " ON CONFLICT DO NOTHING") + " RETURNING pk";
  };
  static const std::string kSkipping = build(false);
  static const std::string kFailing = build(true);
  Params params;
  add_run(params, run);
  params.text(owner != nullptr ? *owner : std::string()).integer(bounded_lease(lease_ms));
  return {conflict_fails ? kFailing : kSkipping, std::move(params)};
}

Status PostgresStore::insert_run(const RunRecord& run, const std::string* owner, int64_t lease_ms) {
  const Command insert = run_insert(run, owner, lease_ms, /*conflict_fails=*/false);
  return with_connection("create_run", [&](Connection& conn) -> Status {
    // A conflict is the id's or the idempotency key's: find out which. A
    // conflicting run deleted in between lets the insert be tried again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      ORCH_ASSIGN_OR_RETURN(Rows inserted, conn.exec("create_run", insert.sql, insert.params));
      if (inserted.count() > 0) return Status();
      ORCH_ASSIGN_OR_RETURN(bool taken, run_exists(conn, run.id));
      if (taken) return Status::already_exists("run " + run.id + " already exists");
      if (!run.idempotency_key.empty()) {
        ORCH_ASSIGN_OR_RETURN(Rows holder, conn.exec("create_run", "SELECT id FROM runs WHERE idempotency_key = $1",
                                                     Params().text(run.idempotency_key)));
        // The contract: the message is the id of the run that holds the key.
        if (holder.count() > 0) return Status::already_exists(holder.string(0, 0));
      }
    }
    return Status::unavailable("create_run: run " + run.id + " kept conflicting with runs being deleted");
  });
}

Status PostgresStore::update_run(const RunRecord& run) {
  static const std::string kUpdate = kRunColumns.update_sql();
  Params params;
  add_run(params, run);
  Status status = with_connection("update_run", [&](Connection& conn) -> Status {
    ORCH_ASSIGN_OR_RETURN(Rows updated, conn.exec("update_run", kUpdate, params));
    return updated.affected() > 0 ? Status() : run_not_found(run.id);
  });
  if (status.ok() && is_terminal(run.status)) forget_document(run.id);
  return status;
}

Result<RunRecord> PostgresStore::get_run(const std::string& run_id) {
  return with_connection("get_run", [&](Connection& conn) -> Result<RunRecord> {
    static const std::string kSelect = "SELECT " + kRunColumns.select_list() + " FROM runs WHERE id = $1";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("get_run", kSelect, Params().text(run_id)));
    if (rows.count() == 0) return run_not_found(run_id);
    ORCH_ASSIGN_OR_RETURN(RunRecord run, read_run(rows, 0));
    ORCH_RETURN_IF_ERROR(resolve_state(conn, &run));
    return run;
  });
}

Result<RunRecord> PostgresStore::find_run_by_idempotency_key(const std::string& key) {
  if (key.empty()) return Status::not_found("no run with idempotency key ''");
  return with_connection("find_run_by_idempotency_key", [&](Connection& conn) -> Result<RunRecord> {
    static const std::string kSelect =
        "SELECT " + kRunColumns.select_list() + " FROM runs WHERE idempotency_key = $1";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("find_run_by_idempotency_key", kSelect, Params().text(key)));
    if (rows.count() == 0) return Status::not_found("no run with idempotency key " + key);
    ORCH_ASSIGN_OR_RETURN(RunRecord run, read_run(rows, 0));
    ORCH_RETURN_IF_ERROR(resolve_state(conn, &run));
    return run;
  });
}

Result<std::vector<RunRecord>> PostgresStore::list_runs(const RunFilter& filter) {
  // At most eight distinct texts, each prepared once per connection.
  std::string sql = "SELECT " + kRunColumns.select_list() + " FROM runs WHERE true";
  Params params;
  params.integer(clamp_size(filter.limit)).integer(clamp_size(filter.offset));
  int next = 3;
  if (filter.status) {
    sql += " AND status = $" + std::to_string(next++);
    params.text(run_status_name(*filter.status));
  }
  if (!filter.workflow_id.empty()) {
    sql += " AND workflow_id = $" + std::to_string(next++);
    params.text(filter.workflow_id);
  }
  if (!filter.parent_run_id.empty()) {
    sql += " AND parent_run_id = $" + std::to_string(next++);
    params.text(filter.parent_run_id);
  }
  sql += " ORDER BY pk DESC LIMIT $1 OFFSET $2";  // newest first
  return with_connection("list_runs", [&](Connection& conn) -> Result<std::vector<RunRecord>> {
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_runs", sql, params));
    std::vector<RunRecord> runs;
    runs.reserve(static_cast<size_t>(rows.count()));
    for (int i = 0; i < rows.count(); ++i) {
      ORCH_ASSIGN_OR_RETURN(RunRecord run, read_run(rows, i));
      ORCH_RETURN_IF_ERROR(resolve_state(conn, &run));
      runs.push_back(std::move(run));
    }
    return runs;
  });
}

Status PostgresStore::delete_run(const std::string& run_id) {
  // Checkpoints, steps, events and pending writes go with it, in one
  // transaction under the run's lock: a writer still adding rows of the run
  // holds that lock (or FOR KEY SHARE) until it commits, and each DELETE
  // after the lock sees what it committed. A missing run: OR404, NotFound.
  Status status = with_connection("delete_run", [&](Connection& conn) -> Status {
    std::vector<Command> commands;
    commands.push_back({"BEGIN", Params()});
    commands.push_back({"SELECT orch_lock_run($1)", Params().text(run_id)});
    for (const char* table : {"events", "steps", "checkpoints", "pending_writes"}) {
      commands.push_back({std::string("DELETE FROM ") + table + " WHERE run_pk = (SELECT pk FROM runs WHERE id = $1)",
                          Params().text(run_id)});
    }
    commands.push_back({"DELETE FROM runs WHERE id = $1", Params().text(run_id)});
    commands.push_back({"COMMIT", Params()});
    return conn.pipeline("delete_run", commands).status();
  });
  forget_document(run_id);
  return status;
}

Status PostgresStore::claim_run(const std::string& run_id, const std::string& owner, int64_t lease_ms) {
  return claim_run_lease(run_id, owner, lease_ms).status();
}

Result<int64_t> PostgresStore::claim_run_lease(const std::string& run_id, const std::string& owner, int64_t lease_ms) {
  // Free, ours already, expired, or the run has ended (anyone may retry or
  // replay it): one conditional UPDATE decides, and
  // bumps the epoch when the run changes hands (so the previous owner's
  // fenced writes are refused from now on). A run whose row another
  // transaction has locked is skipped at first (SKIP LOCKED) so a claim
  // never queues behind another instance's work on it; only when the lease
  // says it could be ours (its owner, or expired) does the claim wait for
  // the lock (at most lock_timeout_ms) and try again.
  static const std::string kCondition =
      std::string("(runs.lease_owner = '' OR runs.lease_owner = $2 OR runs.lease_expires_at_ms <= ") + kNowMs +
      " OR runs.status IN ('completed', 'failed', 'cancelled'))";
  static const std::string kSet =
      std::string("SET lease_owner = $2, lease_epoch = CASE WHEN runs.lease_owner = $2 THEN runs.lease_epoch "
                  "ELSE runs.lease_epoch + 1 END, lease_expires_at_ms = ") +
      kNowMs + " + $3::bigint ";
  static const std::string kSkipLocked =
      "WITH target AS (SELECT pk FROM runs WHERE id = $1 FOR UPDATE SKIP LOCKED) UPDATE runs " + kSet +
      "FROM target WHERE runs.pk = target.pk AND " + kCondition + " RETURNING runs.lease_epoch";
  static const std::string kWaiting =
      "UPDATE runs " + kSet + "WHERE id = $1 AND " + kCondition + " RETURNING runs.lease_epoch";
  static const std::string kLease = "SELECT lease_owner, " + kCondition + " FROM runs WHERE id = $1";
  Params params;
  params.text(run_id).text(owner).integer(bounded_lease(lease_ms));
  return with_connection("claim_run", [&](Connection& conn) -> Result<int64_t> {
    ORCH_ASSIGN_OR_RETURN(Rows claimed, conn.exec("claim_run", kSkipLocked, params));
    if (claimed.count() > 0) return claimed.integer(0, 0);
    ORCH_ASSIGN_OR_RETURN(Rows lease, conn.exec("claim_run", kLease, Params().text(run_id).text(owner)));
    if (lease.count() == 0) return run_not_found(run_id);
    if (lease.text(0, 1) == "t") {
      ORCH_ASSIGN_OR_RETURN(Rows waited, conn.exec("claim_run", kWaiting, params));
      if (waited.count() > 0) return waited.integer(0, 0);
    }
    return Status::aborted("run " + run_id + " is leased by " + lease.string(0, 0));
  });
}

Status PostgresStore::check_lease(const std::string& run_id, const std::string& owner, int64_t epoch) {
  return with_connection("check_lease", [&](Connection& conn) -> Status {
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("check_lease", "SELECT lease_owner, lease_epoch FROM runs WHERE id = $1",
                                               Params().text(run_id)));
    if (rows.count() == 0) return run_not_found(run_id);
    ORCH_ASSIGN_OR_RETURN(int64_t held_at, rows.integer(0, 1));
    const std::string held_by = rows.string(0, 0);
    if (held_by == owner && held_at == epoch) return Status();
    return lease_lost_status(run_id, "is held by '" + held_by + "' at epoch " + std::to_string(held_at) +
                                         ", not by '" + owner + "' at epoch " + std::to_string(epoch));
  });
}

Result<int64_t> PostgresStore::renew_leases(const std::string& owner, int64_t lease_ms) {
  if (owner.empty()) return int64_t{0};
  static const std::string kRenew = std::string("UPDATE runs SET lease_expires_at_ms = ") + kNowMs +
                                    " + $2::bigint WHERE lease_owner = $1 AND status NOT IN ('completed', "
                                    "'failed', 'cancelled')";
  return with_connection("renew_leases", [&](Connection& conn) -> Result<int64_t> {
    ORCH_ASSIGN_OR_RETURN(Rows renewed, conn.exec("renew_leases", kRenew,
                                                  Params().text(owner).integer(bounded_lease(lease_ms))));
    return static_cast<int64_t>(renewed.affected());
  });
}

Result<bool> PostgresStore::claim_singleton(const std::string& name, const std::string& owner, int64_t lease_ms) {
  // Free, ours, or expired: one upsert decides (no row: it is free).
  static const std::string kClaim =
      std::string("INSERT INTO singletons (name, owner, expires_at_ms) VALUES ($1, $2, ") + kNowMs +
      " + $3::bigint) ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at_ms = "
      "EXCLUDED.expires_at_ms WHERE singletons.owner = EXCLUDED.owner OR singletons.expires_at_ms <= " +
      kNowMs + " RETURNING 1";
  return with_connection("claim_singleton", [&](Connection& conn) -> Result<bool> {
    ORCH_ASSIGN_OR_RETURN(Rows claimed, conn.exec("claim_singleton", kClaim,
                                                  Params().text(name).text(owner).integer(bounded_lease(lease_ms))));
    return claimed.count() > 0;
  });
}

Result<std::vector<std::string>> PostgresStore::list_expired_leases(size_t limit) {
  static const std::string kExpired = std::string(
                                          "SELECT id FROM runs WHERE status = 'running' AND parent_run_id = '' AND "
                                          "lease_expires_at_ms <= ") +
                                      kNowMs + " ORDER BY pk LIMIT $1";
  return with_connection("list_expired_leases", [&](Connection& conn) -> Result<std::vector<std::string>> {
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_expired_leases", kExpired, Params().integer(clamp_size(limit))));
    std::vector<std::string> ids;
    ids.reserve(static_cast<size_t>(rows.count()));
    for (int i = 0; i < rows.count(); ++i) ids.push_back(rows.string(i, 0));
    return ids;
  });
}

// ---- Diagnostics ----------------------------------------------------------------

Result<int64_t> PostgresStore::checkpoint_bytes(const std::string& run_id) {
  return with_connection("checkpoint_bytes", [&](Connection& conn) -> Result<int64_t> {
    ORCH_RETURN_IF_ERROR(check_run_exists(conn, run_id));
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("checkpoint_bytes",
                                               "SELECT COALESCE(SUM(octet_length(body)), 0) FROM checkpoints "
                                               "WHERE run_pk = (SELECT pk FROM runs WHERE id = $1)",
                                               Params().text(run_id)));
    return rows.integer(0, 0);
  });
}

}  // namespace orch::postgres

namespace orch {

Result<std::shared_ptr<Store>> new_postgres_store(const std::string& conninfo, PostgresStoreOptions options) {
  ORCH_ASSIGN_OR_RETURN(std::shared_ptr<postgres::PostgresStore> store,
                        postgres::PostgresStore::open(conninfo, options));
  return std::shared_ptr<Store>(std::move(store));
}

size_t default_postgres_max_connections() {
  // Three instances on a 2-core machine (with the database server) ran
  // 44-55% faster with 2 connections each than with 8, and one instance as
  // fast with 3 as with 8, on 20% less database CPU per node (README,
  // Benchmarks, PostgreSQL): more connections than cores only contend.
  const size_t threads = std::thread::hardware_concurrency();
  return std::clamp<size_t>(2 * threads, 2, 8);
}

bool is_postgres_uri(const std::string& db) {
  return db.rfind("postgres://", 0) == 0 || db.rfind("postgresql://", 0) == 0;
}

int postgres_store_schema_version() { return postgres::latest_schema_version(); }

Result<int64_t> postgres_checkpoint_bytes(Store& store, const std::string& run_id) {
  auto* pg = dynamic_cast<postgres::PostgresStore*>(&store);
  if (pg == nullptr) return Status::invalid_argument("postgres_checkpoint_bytes: not a PostgreSQL store");
  return pg->checkpoint_bytes(run_id);
}

}  // namespace orch
