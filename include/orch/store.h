// SPDX-License-Identifier: MIT
//
// Store: where runs, checkpoints, steps and events live. The engine keeps no
// run state only in memory: everything needed to continue a run after a crash
// is in the store. orch ships an in-memory store (new_memory_store(), at the
// end of this header, in orch::core), a SQLite store (orch/sqlite_store.h,
// orch::sqlite); hosts may implement their own and check it with the
// conformance kit (orch/testing/store_conformance.h, orch::testing).
//
// Design for several engines on one database (leases with fencing):
// claim_run_lease() takes a lease on a run and returns its epoch, a counter
// the store bumps whenever a claim moves the run to another owner (a
// takeover). The engine sends owner and epoch with every batch of a run's
// progress (StoreBatch::lease_owner/lease_epoch); the store refuses the whole
// batch, atomically with writing it, when the run's lease now has another
// owner or epoch: a stale owner (a paused or partitioned process whose lease
// ran out and was taken over) can never write after losing its run. Leases
// are renewed in bulk (renew_leases) and runs whose lease ran out are found
// with list_expired_leases. The in-memory, SQLite and PostgreSQL stores
// fence; a store that does not returns epoch 0 from claim_run_lease, and a
// batch with epoch 0 is never fenced.
//
// Error contract: NotFound for a missing run/checkpoint/step; AlreadyExists for
// a duplicate id; Aborted when a lease or version check fails (a fenced write
// refused because the run was taken over: Aborted whose message starts with
// "lease lost", see lease_lost()); Unavailable for transient failures. Any
// other code fails the run.
//
// Thread-safety: implementations must be safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch {

enum class RunStatus { kPending, kRunning, kInterrupted, kCompleted, kFailed, kCancelled };
// "pending", "running", "interrupted", "completed", "failed", "cancelled".
ORCH_EXPORT std::string_view run_status_name(RunStatus status);
ORCH_EXPORT std::optional<RunStatus> run_status_from_name(std::string_view name);
inline bool is_terminal(RunStatus s) {
  return s == RunStatus::kCompleted || s == RunStatus::kFailed || s == RunStatus::kCancelled;
}

struct RunRecord {
  std::string id;
  RunStatus status = RunStatus::kPending;
  std::string workflow_id;         // stored workflow, empty for inline definitions
  Value workflow;                  // the definition the run started with (null for C++-built)
  Value input = Value::object();
  Value config = Value::object();  // per-run config, workflow defaults merged in
  Value state = Value::object();   // latest state
  // The host application's data about the run (orch serve: its callbacks),
  // stored with the run; the engine never reads it. Null when none.
  Value host_data;
  std::string error;               // why it failed
  std::string parent_run_id;       // subgraph children
  std::string parent_node;
  std::string idempotency_key;
  std::string forked_from_run_id;
  std::string forked_from_checkpoint_id;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t checkpoint_count = 0;
  // Times Engine::recover() resumed the run after it crashed the process
  // (EngineOptions::crash_log_path). The engine fails a run whose count
  // reaches EngineOptions::max_recoveries: a run that crashes its process
  // must not crash it again on every restart.
  int64_t recoveries = 0;
};

struct Checkpoint {
  std::string id;
  std::string run_id;
  std::string parent_id;           // previous checkpoint of the run, empty for the first
  std::string step_id;             // "__init__", the node(s) of the superstep, "__end__", ...
  int64_t version = 0;             // 0 at __init__ / __fork__, then one more per checkpoint (superstep k: k)
  Value state;
  // The nodes the superstep closed by this checkpoint ran (not cumulative, so a
  // checkpoint's size does not grow with the run; the API accumulates them).
  std::vector<std::string> completed_nodes;
  Value metadata = Value::object();  // route_results, workflow_version, scheduler state
  int64_t created_at_ms = 0;
};

enum class StepStatus { kPending, kReady, kRunning, kCompleted, kFailed, kSkipped, kInterrupted };
ORCH_EXPORT std::string_view step_status_name(StepStatus status);

// One execution attempt of a node (or of one send item).
struct StepRecord {
  std::string id;
  std::string run_id;
  std::string node_name;
  std::string type;                // node type
  StepStatus status = StepStatus::kPending;
  int attempt = 1;
  int max_attempts = 1;
  int64_t superstep = 0;
  int item_index = -1;             // send items
  std::string parent_step_id;      // send items point at the send step
  std::string worker_id;
  std::string child_run_id;        // subgraph
  Value input;
  Value output;
  std::string error;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t created_at_ms = 0;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;
};

// A run event. `seq` is per run, starting at 1, strictly increasing.
struct EventRecord {
  std::string run_id;
  int64_t seq = 0;
  std::string kind;                // "run.started", "step.completed", "values", ...
  Value data;
  int64_t created_at_ms = 0;
};

// A node result recorded before its superstep's checkpoint (so a crash does not
// run it again).
struct PendingWrite {
  std::string run_id;
  int64_t superstep = 0;           // the version the superstep will commit
  std::string node_name;
  Value result;                    // the engine's serialized node outcome
};

struct RunFilter {
  std::optional<RunStatus> status;
  std::string workflow_id;
  std::string parent_run_id;
  size_t limit = 100;
  size_t offset = 0;
};

// A stored workflow definition (the server's /workflows).
struct WorkflowRecord {
  std::string id;
  std::string name;
  int64_t version = 1;
  Value definition;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

// A run a StoreBatch creates (StoreBatch::create), claimed by `owner`.
// (Outside StoreBatch: clang cannot use a nested struct's default member
// initializers before the enclosing struct is complete.)
struct NewRunRecord {
  RunRecord run;
  std::string owner;
  int64_t lease_ms = 0;
};

// Writes the engine makes together, for one run, when it leaves a run or
// commits a superstep: steps, pending writes, a checkpoint, a run update and
// events. A store that can should write them in one transaction (the SQLite
// store does); the default writes them one call at a time.
struct StoreBatch {
  std::vector<StepRecord> steps;            // put_step, in order
  std::vector<PendingWrite> pending_writes; // put_pending_write, in order
  // commit_checkpoint(*checkpoint, *run, sync_to_disk) when set; otherwise
  // update_run(*run) when run is set.
  std::optional<Checkpoint> checkpoint;
  // A checkpoint of the same run committed just before `checkpoint`, in the
  // same write: a run's last superstep and its __end__, which follow each
  // other with nothing run between them. The engine sets it only for a store
  // whose accepts_earlier_checkpoint() is true (a store that overrides
  // write_batch and knows nothing of it would drop it).
  std::optional<Checkpoint> earlier_checkpoint;
  std::optional<RunRecord> run;
  bool sync_to_disk = false;
  std::vector<EventRecord> events;          // appended last, in order; seq set on success
  // The start of a run: create_claimed_run(create->run, owner, lease_ms)
  // before everything else (the run's first checkpoint, say), in the same
  // transaction for a store that has them. Fails as create_run does
  // (AlreadyExists), and then nothing of the batch is written.
  using NewRun = NewRunRecord;
  std::optional<NewRun> create;
  // Fencing: with lease_epoch > 0 the batch is written only while the run's
  // lease is held by lease_owner at lease_epoch (the epoch claim_run_lease
  // returned); otherwise nothing of it is written and write_batch returns
  // Aborted "lease lost ...". The lease need not be unexpired: an expired
  // lease nobody took over is still the writer's.
  std::string lease_owner;
  int64_t lease_epoch = 0;

  bool empty() const {
    return steps.empty() && pending_writes.empty() && !checkpoint && !earlier_checkpoint && !run && events.empty() &&
           !create;
  }
};

// What Store::watch_changes reports: events appended to run `key`, or host
// records of collection `key` put or deleted.
struct StoreChange {
  enum class Kind { kEvents, kHostRecords };
  Kind kind = Kind::kEvents;
  std::string key;
};

// A subscription made with Store::watch_changes: the watching stops (and no
// call of its callback is running) once this is destroyed.
class ORCH_EXPORT StoreWatch {
 public:
  virtual ~StoreWatch() = default;
  // This watch wants run `run_id`'s new events (until as many unfollow()
  // calls). A store that announces only followed runs (PostgreSQL with
  // announce_followed_only) then announces that run's writes to every
  // watch; other stores announce every run, and ignore this. A follow may
  // take a moment to reach the stores writing the run: a reader still looks
  // at the store itself now and then. May write to the store; never throws.
  virtual void follow(const std::string& run_id) { (void)run_id; }
  virtual void unfollow(const std::string& run_id) { (void)run_id; }
};
// Whether `status` is a fenced write refused because another owner took the
// run over (Aborted, message starting with "lease lost").
ORCH_EXPORT bool lease_lost(const Status& status);
// The Status a store returns for such a refused write.
ORCH_EXPORT Status lease_lost_status(const std::string& run_id, const std::string& detail);

class ORCH_EXPORT Store {
 public:
  virtual ~Store() = default;

  // Runs. create_run fails with AlreadyExists for a taken id, or for a taken
  // non-empty idempotency_key (the existing run's id is the message).
  virtual Status create_run(const RunRecord& run) = 0;
  virtual Status update_run(const RunRecord& run) = 0;
  virtual Result<RunRecord> get_run(const std::string& run_id) = 0;
  virtual Result<RunRecord> find_run_by_idempotency_key(const std::string& key) = 0;
  virtual Result<std::vector<RunRecord>> list_runs(const RunFilter& filter) = 0;
  // Removes the run and everything it owns (checkpoints, steps, events, writes).
  virtual Status delete_run(const std::string& run_id) = 0;

  // Leases, for stores shared by several engines. Returns Aborted when another
  // live owner holds the run. A run that has ended (completed, failed,
  // cancelled) is anyone's to claim: another engine may retry or replay it. The in-memory store keeps leases too (several
  // engines in one process may share it).
  virtual Status claim_run(const std::string& run_id, const std::string& owner, int64_t lease_ms) = 0;
  // create_run, then claim_run for `owner` (the engine's start of a run). The
  // default makes the two calls; a database store can write both at once.
  virtual Status create_claimed_run(const RunRecord& run, const std::string& owner, int64_t lease_ms);
  // claim_run that also returns the lease's epoch: 1 for a run's first
  // owner (create_claimed_run's run has epoch 1), then one more each time a
  // claim gives the run to a different owner; a claim by the current owner
  // renews the lease and keeps the epoch. The default calls claim_run and
  // returns 0 (no fencing).
  virtual Result<int64_t> claim_run_lease(const std::string& run_id, const std::string& owner, int64_t lease_ms);
  // Whether `owner` still holds run `run_id` at `epoch`: OK, Aborted "lease
  // lost ..." when not, NotFound for a missing run. write_batch's default
  // asks it before writing a fenced batch (not atomic with the writes: a
  // store shared between processes must fence inside write_batch itself).
  // The default says OK.
  virtual Status check_lease(const std::string& run_id, const std::string& owner, int64_t epoch);
  // Extends every lease `owner` holds on a run that has not ended to now +
  // `lease_ms` (one statement on a database store); returns how many. A
  // lease already taken over by another owner is not touched. The default
  // says Unimplemented.
  virtual Result<int64_t> renew_leases(const std::string& owner, int64_t lease_ms);
  // Up to `limit` ids of top-level runs (no parent_run_id) in status
  // "running" whose lease has run out (or that no owner holds), oldest
  // first: what a takeover loop claims and resumes. Subgraph children are
  // left out: they resume through their parents. Default: Unimplemented.
  virtual Result<std::vector<std::string>> list_expired_leases(size_t limit);
  // Periodic work that must run once across the engines sharing a store (a
  // retention sweep): true when `owner` now holds the lease named `name`
  // until now + `lease_ms` (it was free, expired, or already its own: then
  // renewed), false while another owner holds it. The default says true (a
  // store with one process).
  virtual Result<bool> claim_singleton(const std::string& name, const std::string& owner, int64_t lease_ms);

  // Checkpoints. commit_checkpoint writes the checkpoint, updates the run
  // record's progress (status, state, error, timestamps, token counts,
  // checkpoint_count; a store may leave the fields create_run and update_run
  // set, such as workflow, input and config, untouched) and drops the run's
  // pending writes, atomically. `sync_to_disk` asks
  // durable stores to fsync before returning.
  virtual Status commit_checkpoint(const Checkpoint& checkpoint, const RunRecord& run,
                                   bool sync_to_disk) = 0;
  virtual Result<Checkpoint> get_checkpoint(const std::string& checkpoint_id) = 0;
  // NotFound when the run has none.
  virtual Result<Checkpoint> latest_checkpoint(const std::string& run_id) = 0;
  // Oldest first.
  virtual Result<std::vector<Checkpoint>> list_checkpoints(const std::string& run_id) = 0;
  // Removes the run's checkpoints with a version above `version` (replay).
  virtual Status truncate_checkpoints(const std::string& run_id, int64_t version) = 0;

  virtual Status put_pending_write(const PendingWrite& write) = 0;
  virtual Result<std::vector<PendingWrite>> list_pending_writes(const std::string& run_id) = 0;

  // Steps (insert or replace by id).
  virtual Status put_step(const StepRecord& step) = 0;
  virtual Result<StepRecord> get_step(const std::string& step_id) = 0;
  virtual Result<std::vector<StepRecord>> list_steps(const std::string& run_id) = 0;

  // Events. append_event assigns and returns the next seq of the run.
  virtual Result<int64_t> append_event(EventRecord event) = 0;
  virtual Result<std::vector<EventRecord>> list_events(const std::string& run_id, int64_t after_seq,
                                                       size_t limit) = 0;

  // Writes `batch` in its order: the new run, steps, pending writes,
  // checkpoint or run, events (setting each event's seq). On error, what was
  // written before the failing item stays (the default) or nothing does (a
  // transactional store). A store may move the steps, pending writes,
  // checkpoint and new run out of the batch; `run` (the engine lends its own
  // record) and the events stay as they were.
  virtual Status write_batch(StoreBatch& batch);
  // Whether write_batch writes StoreBatch::earlier_checkpoint (before the
  // batch's checkpoint, both or neither): the default write_batch does; a
  // store that overrides it says so here. The engine then commits a run's last
  // superstep and its end together, one transaction fewer per run.
  virtual bool accepts_earlier_checkpoint() const { return false; }

  // write_batch without waiting for the commit: `done` gets the result and
  // the batch (its events' seqs set) once the batch is written. A store with
  // a group commit queues the batch and returns at once; the thread that
  // writes its group then calls `done`, so no caller sleeps on a commit. The
  // default writes here and calls `done` before returning.
  // Order: batches of one run handed over one after another (async or not)
  // are committed in that order, and `done` of an earlier batch runs before
  // a later write_batch of that run returns or a later `done` of it runs.
  // Different runs' batches may be written and called back in any order.
  // `done` runs once, on the calling thread or on one of the store's; it must
  // return quickly, must not call this store's write_batch or
  // write_batch_async (the writing thread would wait for itself), and must
  // not drop the last reference to the store.
  using BatchDone = std::function<void(Status, StoreBatch&)>;
  virtual void write_batch_async(StoreBatch batch, BatchDone done);
  // Whether write_batch_async returns without waiting for a disk or a
  // network (it queues the batch for a thread of its own, or writes to
  // memory). The engine then handles a worker's reply on the thread that
  // delivers it (an HTTP event loop, say) instead of handing it to its own
  // threads. The default writes on the calling thread: false.
  virtual bool writes_without_waiting() const { return false; }

  // Host records: JSON documents the host application keeps beside its runs
  // (orch serve: the workers registered through its API), in named
  // collections, keyed by id. The engine never reads them. put replaces a
  // record of that id; delete of a missing one is NotFound; list returns a
  // collection's records in the order they were first put. The defaults say
  // Unimplemented: the host then keeps them only for the life of its process.
  virtual Status put_host_record(const std::string& collection, const std::string& id, const Value& record) {
    (void)collection;
    (void)id;
    (void)record;
    return Status::unimplemented("this store does not keep host records");
  }
  virtual Status delete_host_record(const std::string& collection, const std::string& id) {
    (void)collection;
    (void)id;
    return Status::unimplemented("this store does not keep host records");
  }
  virtual Result<std::vector<Value>> list_host_records(const std::string& collection) {
    (void)collection;
    return Status::unimplemented("this store does not keep host records");
  }

  // Calls `on_change` whenever a client of this store's database, this
  // process or another, appends events to a run or changes a collection of
  // host records: several orch serve instances sharing PostgreSQL use it so
  // that an SSE stream on one follows a run executing on another, and a
  // worker registered through one is known to all, without polling. Calls
  // come from a thread of the store's, one at a time; they should return
  // quickly (the next change waits), may repeat or be spurious, and are
  // missed while the store cannot reach its database (a reader still looks
  // at the store now and then). The default says Unimplemented: in one
  // process, Engine::subscribe already sees every event.
  virtual Result<std::unique_ptr<StoreWatch>> watch_changes(std::function<void(const StoreChange&)> on_change) {
    (void)on_change;
    return Status::unimplemented("this store does not announce changes");
  }

  // Stored workflows.
  virtual Status put_workflow(const WorkflowRecord& workflow, bool create_only) = 0;
  virtual Result<WorkflowRecord> get_workflow(const std::string& id) = 0;
  virtual Result<std::vector<WorkflowRecord>> list_workflows() = 0;
  virtual Status delete_workflow(const std::string& id) = 0;
};

// Forwards every call to another Store. Derive from it to change only part of
// a store's behaviour (count calls, add caching, inject faults in tests).
// write_batch and create_claimed_run keep Store's defaults, which call this
// wrapper's own methods, so a derived wrapper's overrides apply to them too.
class ORCH_EXPORT StoreWrapper : public Store {
 public:
  explicit StoreWrapper(std::shared_ptr<Store> target) : target_(std::move(target)) {}
  Store& target() const { return *target_; }

  Status create_run(const RunRecord& run) override { return target_->create_run(run); }
  Status update_run(const RunRecord& run) override { return target_->update_run(run); }
  Result<RunRecord> get_run(const std::string& id) override { return target_->get_run(id); }
  Result<RunRecord> find_run_by_idempotency_key(const std::string& key) override {
    return target_->find_run_by_idempotency_key(key);
  }
  Result<std::vector<RunRecord>> list_runs(const RunFilter& f) override { return target_->list_runs(f); }
  Status delete_run(const std::string& id) override { return target_->delete_run(id); }
  Status claim_run(const std::string& id, const std::string& owner, int64_t lease_ms) override {
    return target_->claim_run(id, owner, lease_ms);
  }
  Result<int64_t> claim_run_lease(const std::string& id, const std::string& owner, int64_t lease_ms) override {
    return target_->claim_run_lease(id, owner, lease_ms);
  }
  Status check_lease(const std::string& id, const std::string& owner, int64_t epoch) override {
    return target_->check_lease(id, owner, epoch);
  }
  Result<int64_t> renew_leases(const std::string& owner, int64_t lease_ms) override {
    return target_->renew_leases(owner, lease_ms);
  }
  Result<std::vector<std::string>> list_expired_leases(size_t limit) override {
    return target_->list_expired_leases(limit);
  }
  Result<bool> claim_singleton(const std::string& name, const std::string& owner, int64_t lease_ms) override {
    return target_->claim_singleton(name, owner, lease_ms);
  }
  Status commit_checkpoint(const Checkpoint& cp, const RunRecord& run, bool sync) override {
    return target_->commit_checkpoint(cp, run, sync);
  }
  Result<Checkpoint> get_checkpoint(const std::string& id) override { return target_->get_checkpoint(id); }
  Result<Checkpoint> latest_checkpoint(const std::string& run) override { return target_->latest_checkpoint(run); }
  Result<std::vector<Checkpoint>> list_checkpoints(const std::string& run) override {
    return target_->list_checkpoints(run);
  }
  Status truncate_checkpoints(const std::string& run, int64_t version) override {
    return target_->truncate_checkpoints(run, version);
  }
  Status put_pending_write(const PendingWrite& w) override { return target_->put_pending_write(w); }
  Result<std::vector<PendingWrite>> list_pending_writes(const std::string& run) override {
    return target_->list_pending_writes(run);
  }
  Status put_step(const StepRecord& step) override { return target_->put_step(step); }
  Result<StepRecord> get_step(const std::string& id) override { return target_->get_step(id); }
  Result<std::vector<StepRecord>> list_steps(const std::string& run) override { return target_->list_steps(run); }
  Result<int64_t> append_event(EventRecord e) override { return target_->append_event(std::move(e)); }
  Result<std::vector<EventRecord>> list_events(const std::string& run, int64_t after, size_t limit) override {
    return target_->list_events(run, after, limit);
  }
  Status put_workflow(const WorkflowRecord& w, bool create_only) override { return target_->put_workflow(w, create_only); }
  Result<WorkflowRecord> get_workflow(const std::string& id) override { return target_->get_workflow(id); }
  Result<std::vector<WorkflowRecord>> list_workflows() override { return target_->list_workflows(); }
  Status delete_workflow(const std::string& id) override { return target_->delete_workflow(id); }
  Status put_host_record(const std::string& collection, const std::string& id, const Value& record) override {
    return target_->put_host_record(collection, id, record);
  }
  Status delete_host_record(const std::string& collection, const std::string& id) override {
    return target_->delete_host_record(collection, id);
  }
  Result<std::vector<Value>> list_host_records(const std::string& collection) override {
    return target_->list_host_records(collection);
  }
  Result<std::unique_ptr<StoreWatch>> watch_changes(std::function<void(const StoreChange&)> on_change) override {
    return target_->watch_changes(std::move(on_change));
  }

 private:
  std::shared_ptr<Store> target_;
};

// A thread-safe in-memory Store. Nothing survives the process.
ORCH_EXPORT std::shared_ptr<Store> new_memory_store();

}  // namespace orch
