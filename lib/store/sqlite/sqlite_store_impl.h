// SPDX-License-Identifier: MIT
//
// The SQLite Store (see include/orch/sqlite_store.h). Runs, steps, events,
// pending writes and workflows are in sqlite_store.cc; checkpoints, with their
// incremental encoding, in sqlite_store_checkpoints.cc.
//
// Concurrency: each call borrows a pooled connection for its duration, so
// reads on different threads run in parallel (WAL) and alongside a write.
// Writes are single short transactions (BEGIN IMMEDIATE) serialized by
// writer_mu_; nothing slow (JSON encoding, diffing states) runs while it is
// held if it can be done before.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "orch/sqlite_store.h"
#include "orch/store.h"
#include "store/checkpoint_codec.h"
#include "store/document_cache.h"
#include "store/sqlite/sqlite_wal_checkpointer.h"
#include "store/sqlite/sqlite_connection.h"
#include "store/sqlite/sqlite_definitions.h"

namespace orch::sqlite {

using checkpoint_codec::ChainLink;
using checkpoint_codec::DocumentBuilder;
using checkpoint_codec::EncodedCheckpoint;
using checkpoint_codec::checkpoint_document;
using checkpoint_codec::encode_checkpoint;
using checkpoint_codec::kDeltaKind;
using checkpoint_codec::kSnapshotKind;
using checkpoint_codec::unpack_document;

class SqliteStore final : public Store {
 public:
  static Result<std::shared_ptr<SqliteStore>> open(const std::string& path,
                                                   const SqliteStoreOptions& options);
  // Writes what write_batch_async queued, then stops the writer thread.
  ~SqliteStore() override { stop_writer(); }

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

  Status commit_checkpoint(const Checkpoint& checkpoint, const RunRecord& run,
                           bool sync_to_disk) override;
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
  // Group commit: see sqlite_store_batches.cc.
  Status write_batch(StoreBatch& batch) override;
  void write_batch_async(StoreBatch batch, BatchDone done) override;
  bool accepts_earlier_checkpoint() const override { return true; }
  bool writes_without_waiting() const override { return true; }

  Status put_workflow(const WorkflowRecord& workflow, bool create_only) override;
  Result<WorkflowRecord> get_workflow(const std::string& id) override;
  Result<std::vector<WorkflowRecord>> list_workflows() override;
  Status delete_workflow(const std::string& id) override;
  Status put_host_record(const std::string& collection, const std::string& id, const Value& record) override;
  Status delete_host_record(const std::string& collection, const std::string& id) override;
  Result<std::vector<Value>> list_host_records(const std::string& collection) override;

  Result<int64_t> checkpoint_bytes(const std::string& run_id);
  // Runs `sql` as is (tests use it to plant damaged rows).
  Status execute_for_testing(const std::string& sql);
  Result<int64_t> query_int_for_testing(const std::string& sql);
  size_t cached_documents_for_testing();
  // False: a batch's events are written a row each, as before schema 10
  // (for tests that turn a file back into an older schema).
  void set_batch_events_for_testing(bool on) { batch_events_.store(on, std::memory_order_relaxed); }
  std::vector<std::string> full_scans_for_testing() { return pool_.full_scans(); }
  int64_t wal_checkpoints_for_testing() const { return checkpointer_ ? checkpointer_->checkpoints_run() : 0; }

 private:
  // create_run, and with `owner` also its lease, in one transaction.
  Status insert_run(const RunRecord& run, const std::string* owner, int64_t lease_ms);
  // Its rows, inside the caller's write transaction (write_batch's new run
  // too); `definition`: the run's workflow encoded already, or null.
  Status insert_run_rows(Connection& conn, const RunRecord& run, const std::string* owner, int64_t lease_ms,
                         const EncodedDefinition* definition = nullptr);
  // OK when `owner` holds run `run_id` at `epoch`, Aborted "lease lost" when
  // not (Store::check_lease), inside the caller's transaction.
  static Status fence(Connection& conn, const std::string& run_id, const std::string& owner, int64_t epoch);
  static Status fence(const RunCounters& held, const std::string& run_id, const std::string& owner, int64_t epoch);
  SqliteStore(const std::string& path, const SqliteStoreOptions& options, bool in_memory);

  // Runs `body(connection)` on a pooled connection and turns SQLite (and any
  // other) exceptions into a Status naming `what`.
  template <typename Body>
  auto with_connection(const char* what, Body&& body) -> decltype(body(std::declval<Connection&>())) {
    return with_lease(what, /*writer=*/false, std::forward<Body>(body));
  }
  // The same, for a body that writes: on the pool's writer connection.
  template <typename Body>
  auto with_writer(const char* what, Body&& body) -> decltype(body(std::declval<Connection&>())) {
    return with_lease(what, /*writer=*/true, std::forward<Body>(body));
  }
  template <typename Body>
  auto with_lease(const char* what, bool writer, Body&& body) -> decltype(body(std::declval<Connection&>()));

  // The latest checkpoint document of a run, kept so the next commit can diff
  // against it without reading the chain back (store/document_cache.h).
  using CachedDocument = checkpoint_codec::CachedDocument;
  bool cached_document(const std::string& run_id, CachedDocument* out) { return cache_.get(run_id, out); }
  void cache_document(const std::string& run_id, CachedDocument entry) { cache_.put(run_id, std::move(entry)); }
  void forget_document(const std::string& run_id) { cache_.forget(run_id); }

  // A checkpoint commit in three parts: encoding before the writer lock, the
  // rows inside a transaction, the document cache after it committed.
  struct PreparedCheckpoint {
    Value document;
    CachedDocument previous;
    std::optional<EncodedCheckpoint> early;
    std::optional<ChainLink> committed;
  };
  // Encodes `checkpoint` against the run's cached document, or against
  // `after` (a checkpoint of the same batch written just before it).
  PreparedCheckpoint prepare_checkpoint(const Checkpoint& checkpoint, const RunRecord& run,
                                        const PreparedCheckpoint* after = nullptr);
  // Once `earlier` is written (committed is set): `prepared` follows it.
  void follow(PreparedCheckpoint& prepared, const Checkpoint& checkpoint, const PreparedCheckpoint& earlier);
  // `new_events`: events written after it in the same transaction, whose
  // seqs the run row's update reserves; `last_event_seq` receives the run's
  // last seq after them, `run_pk` its pk. `run_row` false leaves the run's
  // row alone: a later checkpoint of the same transaction writes it.
  // `known`: the run row's counters as read in this transaction (else read).
  Status write_checkpoint(Connection& conn, const Checkpoint& checkpoint, const RunRecord& run,
                          PreparedCheckpoint& prepared, int64_t new_events = 0,
                          int64_t* last_event_seq = nullptr, int64_t* run_pk = nullptr, bool run_row = true,
                          const RunCounters* known = nullptr);
  void checkpoint_committed(const RunRecord& run, PreparedCheckpoint& prepared);
  // A run row read with a null state (see kRunProgressSql) gets its latest
  // checkpoint's state: from the document cache when it is current.
  Status resolve_state(Connection& conn, RunRecord* run);

  // Checkpoint helpers; all run inside a transaction on `conn`.
  Result<bool> run_exists(Connection& conn, const std::string& run_id);
  // The run's pk (rows of events, checkpoints and steps carry it); NotFound.
  Result<int64_t> run_pk(Connection& conn, const std::string& run_id);
  Result<Value> load_document(Connection& conn, const std::string& run_id, int64_t base_seq,
                              int64_t seq);
  // The checkpoint of the row `q` (prepared and bound by the caller) finds;
  // NotFound naming `key` when none.
  Result<Checkpoint> read_checkpoint_row(Connection& conn, Query& q, const std::string& key);
  // The checkpoint at `seq` of the run with pk `pk`, for event `event_seq` whose data
  // it completes (EventForm); Internal when it is missing or damaged.
  Result<Checkpoint> checkpoint_at(Connection& conn, int64_t pk, int64_t seq, int64_t event_seq);
  // Before checkpoints after `version` go: events whose data one of them
  // completes are stored whole.
  Status restore_event_states(Connection& conn, int64_t pk, const std::string& run_id, int64_t version);

  SqliteStoreOptions options_;
  // Before checkpointer_, which takes it to finish a checkpoint with no
  // writer of this process committing meanwhile.
  std::atomic<bool> batch_events_{true};  // set_batch_events_for_testing
  std::mutex writer_mu_;
  // Before pool_: it must outlive every pooled connection's commit hook.
  std::unique_ptr<WalCheckpointer> checkpointer_;
  ConnectionPool pool_;

  // Group commit of batches (sqlite_store_batches.cc).
  struct GroupMember;
  Status prepare_member(GroupMember& member);
  Status finish_member(GroupMember& member);
  void lead_group(bool writer);
  void report(const std::vector<GroupMember*>& group);
  void run_writer();
  void hand_to_writer_locked();
  void stop_writer();
  void write_group(const std::vector<GroupMember*>& group);
  Status write_batch_rows(Connection& conn, GroupMember& member);
  // write_batch_rows with a failed statement as a Status.
  Status write_member(Connection& conn, GroupMember& member);
  std::mutex group_mu_;
  std::vector<GroupMember*> group_queue_;
  bool group_leader_ = false;
  // The writer thread (started by the first write_batch_async) leads while
  // writer_leads_; written_by_caller_ is a group a caller wrote that it left
  // to the writer to report (it held async batches).
  std::thread writer_;
  std::condition_variable writer_wake_;
  bool writer_leads_ = false;
  bool writer_stopping_ = false;
  std::vector<GroupMember*> written_by_caller_;

  checkpoint_codec::DocumentCache cache_;
};

}  // namespace orch::sqlite

namespace orch::sqlite {

Status run_not_found(const std::string& run_id);

template <typename Body>
auto SqliteStore::with_lease(const char* what, bool writer, Body&& body)
    -> decltype(body(std::declval<Connection&>())) {
  try {
    ConnectionPool::Lease conn = writer ? pool_.acquire_writer() : pool_.acquire();
    return body(*conn);
  } catch (const SQLite::Exception& e) {
    return status_from_exception(e, what);
  } catch (const std::exception& e) {
    return Status::internal(std::string(what) + ": " + e.what());
  }
}

}  // namespace orch::sqlite
