// SPDX-License-Identifier: MIT
//
// The PostgreSQL Store (see include/orch/postgres_store.h). Opening, runs and
// leases are in pg_store.cc; steps, events, pending writes, workflows and
// host records in pg_store_records.cc; checkpoints in pg_store_checkpoints.cc;
// a superstep's batch, written as one pipelined transaction, in
// pg_store_batches.cc, or with other runs' in one (group commit) in
// pg_store_group.cc.
//
// Concurrency: each call borrows a pooled connection for its duration; calls
// on different connections run in parallel in the server. What must be
// serialized per run (event seqs, the checkpoint chain) is, by the run row's
// lock (orch_lock_run, or the row an UPDATE takes), so it also holds across
// instances.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "orch/postgres_store.h"
#include "orch/store.h"
#include "store/checkpoint_codec.h"
#include "store/document_cache.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/pg_followers.h"
#include "store/postgres/pg_pool.h"

namespace orch::postgres {

using checkpoint_codec::ChainLink;
using checkpoint_codec::EncodedCheckpoint;

Status run_not_found(const std::string& run_id);
// A checkpoint row's chain link from columns id, seq, base_seq, chain_bytes,
// base_bytes (in that order) of `row`.
Result<ChainLink> read_link(const Rows& rows, int row);
bool same_link(const ChainLink& a, const ChainLink& b);
// SELECT of the latest checkpoint row's link of run $1.
extern const char* const kLatestLinkSql;
// The INSERT of a new run (leased to `owner` when not null, at epoch 1),
// returning its pk. A taken id or idempotency key: no row, or with
// `conflict_fails` a unique violation (AlreadyExists) that aborts a pipeline.
Command run_insert(const RunRecord& run, const std::string* owner, int64_t lease_ms, bool conflict_fails);

// The condition of a group commit's statement for one run
// (checkpoint_events_sql): the run's latest checkpoint is
// `expected_checkpoint` ('' : none) and, with `lease_epoch` > 0,
// `lease_owner` holds the run at that epoch.
struct CheckpointCondition {
  std::string expected_checkpoint;
  std::string lease_owner;
  int64_t lease_epoch = 0;
};
// A checkpoint commit's statement: the run's progress and the checkpoint
// row, with `events` (not null) also the events (and `steps`), and
// with `condition` (events needed) only when it holds.
Command checkpoint_commit(const RunRecord& run, const Checkpoint& cp, const EncodedCheckpoint& row,
                          const std::vector<EventRecord>* events, const std::vector<const StepRecord*>& steps,
                          bool announce, const CheckpointCondition* condition = nullptr);
// A batch's steps, each id once (its last version), in the order of those
// last versions.
std::vector<const StepRecord*> last_step_versions(const std::vector<StepRecord>& steps);

class PostgresStore final : public Store, public std::enable_shared_from_this<PostgresStore> {
 public:
  static Result<std::shared_ptr<PostgresStore>> open(const std::string& conninfo,
                                                     const PostgresStoreOptions& options);
  // Writes what write_batch_async queued, then stops the writer thread.
  ~PostgresStore() override { stop_writer(); }

  Status create_run(const RunRecord& run) override;
  Status create_claimed_run(const RunRecord& run, const std::string& owner, int64_t lease_ms) override;
  Status update_run(const RunRecord& run) override;
  Result<RunRecord> get_run(const std::string& run_id) override;
  Result<RunRecord> find_run_by_idempotency_key(const std::string& key) override;
  Result<std::vector<RunRecord>> list_runs(const RunFilter& filter) override;
  Status delete_run(const std::string& run_id) override;
  Status claim_run(const std::string& run_id, const std::string& owner, int64_t lease_ms) override;
  Result<int64_t> claim_run_lease(const std::string& run_id, const std::string& owner, int64_t lease_ms) override;
  Status check_lease(const std::string& run_id, const std::string& owner, int64_t epoch) override;
  Result<int64_t> renew_leases(const std::string& owner, int64_t lease_ms) override;
  Result<std::vector<std::string>> list_expired_leases(size_t limit) override;
  Result<bool> claim_singleton(const std::string& name, const std::string& owner, int64_t lease_ms) override;

  Status commit_checkpoint(const Checkpoint& checkpoint, const RunRecord& run, bool sync_to_disk) override;
  Result<Checkpoint> get_checkpoint(const std::string& checkpoint_id) override;
  Result<Checkpoint> latest_checkpoint(const std::string& run_id) override;
  Result<std::vector<Checkpoint>> list_checkpoints(const std::string& run_id) override;
  Status truncate_checkpoints(const std::string& run_id, int64_t version) override;

  Status put_pending_write(const PendingWrite& write) override;
  Result<std::vector<PendingWrite>> list_pending_writes(const std::string& run_id) override;

  Status put_step(const StepRecord& step) override;
  Result<StepRecord> get_step(const std::string& step_id) override;
  Result<std::vector<StepRecord>> list_steps(const std::string& run_id) override;

  Result<int64_t> append_event(EventRecord event) override;
  Result<std::vector<EventRecord>> list_events(const std::string& run_id, int64_t after_seq,
                                               size_t limit) override;
  Status write_batch(StoreBatch& batch) override;
  // Queued for the writer thread (pg_store_group.cc), which writes it with
  // the other queued batches and calls `done` back, in the order handed over.
  void write_batch_async(StoreBatch batch, BatchDone done) override;
  bool writes_without_waiting() const override { return true; }
  // A run's last superstep and its end are one batch: one transaction, and
  // one member of a writer lane's group instead of two groups.
  bool accepts_earlier_checkpoint() const override { return true; }

  Status put_workflow(const WorkflowRecord& workflow, bool create_only) override;
  Result<WorkflowRecord> get_workflow(const std::string& id) override;
  Result<std::vector<WorkflowRecord>> list_workflows() override;
  Status delete_workflow(const std::string& id) override;
  Status put_host_record(const std::string& collection, const std::string& id, const Value& record) override;
  Status delete_host_record(const std::string& collection, const std::string& id) override;
  Result<std::vector<Value>> list_host_records(const std::string& collection) override;

  Result<std::unique_ptr<StoreWatch>> watch_changes(std::function<void(const StoreChange&)> on_change) override;

  Result<int64_t> checkpoint_bytes(const std::string& run_id);

  // Writes `batches` as one group commit (as write_batch groups batches
  // arriving together), one Status each. A batch that cannot join a group
  // (see groupable) is written on its own. For tests.
  std::vector<Status> write_batches_as_group(const std::vector<StoreBatch*>& batches);
  // Writes `batches` as a writer lane writes what was handed to it in this
  // order (write_in_order), one Status each. For tests.
  std::vector<Status> write_batches_as_lane(const std::vector<StoreBatch*>& batches);
  // Group transactions written so far (write_group). For tests.
  size_t groups_written() const { return groups_written_.load(std::memory_order_relaxed); }

 private:
  PostgresStore(const ConnectSettings& settings, const PostgresStoreOptions& options);

  // Runs `body(connection)` on a pooled connection; Unavailable when none
  // can be had, Internal for an exception (memory) thrown inside.
  template <typename Body>
  auto with_connection(const char* what, Body&& body) -> decltype(body(std::declval<Connection&>()));

  // create_run, and with `owner` also its lease, in one statement.
  Status insert_run(const RunRecord& run, const std::string* owner, int64_t lease_ms);
  // Whether run `run_id` exists (to tell "no rows" from "no run").
  Result<bool> run_exists(Connection& conn, const std::string& run_id);
  // An empty result of a read keyed by run: NotFound when the run is missing.
  Status check_run_exists(Connection& conn, const std::string& run_id);

  // ---- Checkpoints (pg_store_checkpoints.cc) ----
  // The latest checkpoint document of a run, kept so the next commit can diff
  // against it and reads can skip rebuilding it.
  using CachedDocument = checkpoint_codec::CachedDocument;
  bool cached_document(const std::string& run_id, CachedDocument* out) { return cache_.get(run_id, out); }
  void cache_document(const std::string& run_id, CachedDocument entry) { cache_.put(run_id, std::move(entry)); }
  void forget_document(const std::string& run_id) { cache_.forget(run_id); }

  // The run's latest checkpoint row's link, or nullopt when it has none.
  Result<std::optional<ChainLink>> latest_link(Connection& conn, const std::string& run_id);
  // The document of checkpoint `checkpoint_id`, rebuilt from its chain in one
  // statement (one snapshot of the database); NotFound when it is gone.
  Result<Value> load_document(Connection& conn, const std::string& run_id, const std::string& checkpoint_id);
  // The checkpoint whose header `sql` selects with `key` as $1.
  Result<Checkpoint> read_checkpoint(Connection& conn, const std::string& sql, const std::string& key);
  // The state of checkpoint `checkpoint_id`, for an event stored without it
  // (Internal when that checkpoint is gone).
  Result<Value> checkpoint_state(Connection& conn, const std::string& run_id, const std::string& checkpoint_id);
  // Before checkpoints above `version` go: events naming one for their state
  // get it back in their data.
  Status restore_event_states(Connection& conn, const std::string& run_id, int64_t run_pk, int64_t version);
  // A run row read with an empty state gets its latest checkpoint's.
  Status resolve_state(Connection& conn, RunRecord* run);

  // ---- Batches (pg_store_batches.cc) ----
  // A checkpoint, encoded before any connection is taken when the run's
  // previous document is cached.
  struct PreparedCheckpoint {
    Value document;
    std::optional<CachedDocument> previous;  // what the batch's first checkpoint follows
    // StoreBatch::earlier_checkpoint's row (following `previous`), which
    // `encoded` then follows.
    std::optional<EncodedCheckpoint> earlier;
    EncodedCheckpoint encoded;
  };
  // Encodes `batch`'s checkpoints (its earlier one first, when it has one)
  // after `prepared`'s previous; `prepared.document` is the checkpoint's.
  void encode_prepared(const StoreBatch& batch, PreparedCheckpoint* prepared) const;
  // Writes one run's batch in one transaction; `seqs` gets its events' seqs.
  // With `create`, the batch's run is inserted in that transaction first;
  // any failure is then returned as it is (nothing was written), for
  // write_batch to create the run on its own and try again.
  Status write_run_batch(const StoreBatch& batch, const std::string& run_id, std::vector<int64_t>* seqs,
                         bool create = false);
  // The batch's statements after the run's lock (and, for a checkpoint, its
  // encoding), and COMMIT with `explicit_transaction`; `event_index` gets the
  // index of the statement returning the events' seqs.
  std::vector<Command> batch_commands(const StoreBatch& batch, const std::string& run_id,
                                      const PreparedCheckpoint* checkpoint, bool explicit_transaction,
                                      size_t* event_index);
  // The transaction's opening statements: BEGIN with `explicit_transaction`
  // (a transaction spanning several pipelines), the commit's durability, the
  // run's lock (checking, with `expected_checkpoint`, that it is the run's
  // latest).
  void open_batch(const StoreBatch& batch, const std::string& run_id, const std::string* expected_checkpoint,
                  bool explicit_transaction, std::vector<Command>* commands);
  void checkpoint_committed(const RunRecord& run, PreparedCheckpoint& prepared);

  // ---- Group commit (pg_store_group.cc) ----
  struct GroupMember;
  struct WriterLane;
  // A superstep's checkpoint with its events (and its steps; pending writes
  // the checkpoint ends): the shape one conditional statement writes.
  static bool groupable(const StoreBatch& batch);
  Status write_grouped(StoreBatch& batch, const std::string& run_id);
  // write_batch of a batch that joins no group (its own transaction).
  Status write_alone(StoreBatch& batch, const std::string& run_id);
  // A write_batch of a run with batches of write_batch_async not yet called
  // back queues behind them: true, with `status` its result, when it did.
  bool write_behind_writer(GroupMember& member, Status* status);
  // REQUIRES: group_mu_ held. Queues `member` in its run's lane; the lane
  // whose thread must be woken, or null.
  WriterLane* queue_for_writer_locked(GroupMember* member);
  void prepare_member(GroupMember& member);
  // The leader writes `group`, then what queued meanwhile, then hands over.
  void lead_group(std::vector<GroupMember*> group);
  // Writes a group in one pipeline (one transaction); each member comes out
  // written, refused by its condition, or failed with the whole group.
  void write_group(const std::vector<GroupMember*>& group);
  // A member's outcome as write_batch returns it: refused or failed with a
  // rolled-back group, it is written on its own (write_run_batch).
  Status finish_member(GroupMember& member);
  // A lane's writer thread: leads while the lane's `leads`, writing its queue in
  // each run's order (write_in_order), and calls back.
  void run_writer(WriterLane& lane);
  void write_in_order(const std::vector<GroupMember*>& members);
  // Tells each member of `members` its result, in order: an async one is
  // called back (and deleted), a waiting one woken.
  void report(const std::vector<GroupMember*>& members);
  void stop_writer();

  // Whether a write of `run_id`'s events announces them (options
  // announce_events, announce_followed_only; pg_followers.h).
  bool announces(std::string_view run_id) const {
    return options_.announce_events && (!options_.announce_followed_only || followed_.announced(run_id));
  }
  // Reads who follows which runs again (a watch of this store heard that changed).
  void reload_followed();
  // Writes (or, for none, deletes) the follow record `token` of a watch.
  void publish_follows(const std::string& token, const std::vector<std::string>& runs);

  PostgresStoreOptions options_;
  FollowedRuns followed_;
  ConnectSettings settings_;  // what the pool's connections are opened with
  ConnectionPool pool_;

  checkpoint_codec::DocumentCache cache_;

  std::mutex group_mu_;
  std::vector<GroupMember*> group_queue_;  // waiting for the next group
  size_t group_leaders_ = 0;               // threads writing groups now
  const size_t group_writers_;             // at most (each on a connection of its own)
  std::atomic<size_t> groups_written_{0};  // see groups_written()
  // Batches of write_batch_async, and write_batch's batches of runs that have
  // some (async_pending_: how many, per run, until called back), queue for a
  // writer thread: one lane per group writer (group_writers_), a run's
  // batches always in the same lane, written in that lane's order by its
  // thread (started by its first batch), which leads while `leads`.
  struct WriterLane {
    std::vector<GroupMember*> queue;
    std::thread thread;
    std::condition_variable wake;
    bool leads = false;
  };
  std::vector<std::unique_ptr<WriterLane>> lanes_;
  std::unordered_map<std::string, size_t> async_pending_;
  bool writer_stopping_ = false;
};

template <typename Body>
auto PostgresStore::with_connection(const char* what, Body&& body) -> decltype(body(std::declval<Connection&>())) {
  try {
    Result<ConnectionPool::Lease> lease = pool_.acquire();
    if (!lease.ok()) return Status(lease.status().code(), std::string(what) + ": " + lease.status().message());
    return body(**lease);
  } catch (const std::exception& e) {
    return Status::internal(std::string(what) + ": " + e.what());
  }
}

}  // namespace orch::postgres
