// SPDX-License-Identifier: MIT
// EngineImpl: the Engine behind orch::Engine::open (not installed).
#pragma once

#include <asio/post.hpp>
#include <atomic>
#include <deque>
#include <optional>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include "engine/crash_guard.h"
#include "engine/run_context.h"
#include "orch/thread_guard.h"
#include "engine/result_cache.h"
#include "orch/state.h"

namespace orch::internal {

// A callable borrowed for the length of one call (locked_then_drain's body):
// unlike a std::function, building one never allocates (a lambda that
// captures more than two references would).
class BodyRef {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, BodyRef>>>
  BodyRef(F&& f)  // NOLINT: built from a lambda at the call
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o) { (*static_cast<std::remove_reference_t<F>*>(o))(); }) {}
  void operator()() const { call_(object_); }

 private:
  void* object_;
  void (*call_)(void*);
};

class EngineImpl final : public orch::Engine {
 public:
  static Result<std::unique_ptr<orch::Engine>> open(EngineOptions options);
  ~EngineImpl() override;

  Result<std::string> start_run(std::shared_ptr<const Workflow> workflow, RunOptions options) override;
  Result<RunRecord> invoke(std::shared_ptr<const Workflow> workflow, RunOptions options) override;
  Status resume_run(const std::string& run_id, const Value& state_updates) override;
  Status cancel_run(const std::string& run_id) override;
  Status retry_run(const std::string& run_id) override;
  Result<std::string> fork_run(const std::string& checkpoint_id, const Value& state_overrides) override;
  Status replay_run(const std::string& run_id, const std::string& checkpoint_id) override;
  Status inject_state(const std::string& run_id, const Value& updates, const std::string& after_node) override;
  Status delete_run(const std::string& run_id) override;
  Result<RunRecord> get_run(const std::string& run_id) override;
  std::shared_ptr<Store> store() const override { return options_.store; }
  Result<RunRecord> wait(const std::string& run_id, std::chrono::milliseconds timeout) override;
  uint64_t subscribe(const std::string& run_id, EventListener listener) override;
  void unsubscribe(uint64_t subscription) override;
  Status recover() override;
  Result<size_t> take_over_expired_runs(size_t limit) override;
  size_t active_runs() const override;
  bool holds_run(const std::string& run_id) const override;

 private:
  explicit EngineImpl(EngineOptions options);

  // engine.cc: lifecycle
  Result<std::string> start_run_internal(std::shared_ptr<const Workflow> workflow, RunOptions options,
                                         const std::string& parent_run_id, const std::string& parent_node,
                                         int depth, const std::string& root_run_id = "");
  // A new run's context, ready to open (nothing stored yet).
  Result<std::shared_ptr<RunContext>> new_run_context(std::shared_ptr<const Workflow> workflow, RunOptions& options,
                                                      const std::string& parent_run_id, const std::string& parent_node,
                                                      int depth, const std::string& root_run_id);
  // Stores a new run, its "run.started" event and its __init__ checkpoint in
  // one write_batch (one commit), then makes it live. An error when the run
  // could not be created (nothing stored); a run created whose checkpoint
  // failed is failed instead (OK returned, the run terminal).
  Status open_run(const std::shared_ptr<RunContext>& ctx, bool plan);
  Status configure(RunContext& ctx);
  void plan_steps(RunContext& ctx);
  Result<std::shared_ptr<const CompiledWorkflow>> compile(std::shared_ptr<const Workflow> wf);
  Result<std::shared_ptr<const Workflow>> workflow_of(const RunRecord& r);
  Result<std::shared_ptr<const Workflow>> resolve_workflow(const std::string& id);
  Result<std::shared_ptr<RunContext>> load_context(const std::string& run_id,
                                                   std::shared_ptr<const CompiledWorkflow> compiled = nullptr);
  std::shared_ptr<const CompiledWorkflow> forget_context(const std::string& run_id);
  std::shared_ptr<RunContext> find_context(const std::string& run_id);
  void schedule_advance(const std::shared_ptr<RunContext>& ctx);
  // Runs `body` under the run's lock; then, if this is the outermost such scope
  // on the run, runs the in-process calls `body` queued, without the lock (and
  // whatever their completions queue in turn). Only engine pool threads use it.
  void locked_then_drain(const std::shared_ptr<RunContext>& ctx, BodyRef body);
  // Asks the dispatcher to abandon the calls of step `step_id`, from a pool
  // thread: callers hold a run lock, and a dispatcher may answer an abandoned
  // call at once (WorkerRegistry does for a call still queued), and that answer
  // takes the run lock.
  void cancel_calls(const std::string& step_id);
  void advance(const std::shared_ptr<RunContext>& ctx);
  void start_superstep(const std::shared_ptr<RunContext>& ctx, const std::vector<int>& ready);
  void complete_task(const std::shared_ptr<RunContext>& ctx, size_t index, NodeOutcome outcome, bool record);
  void finish_superstep(const std::shared_ptr<RunContext>& ctx);
  void apply_injections(RunContext& c, const std::string& node);
  // Writes a checkpoint; `ran` are the nodes of the superstep it closes.
  Status commit(RunContext& ctx, const std::string& step_id, bool force, std::vector<std::string> ran = {});
  // Puts that checkpoint, and its "checkpoint.created" event, into the run's
  // batch; false when the durability mode keeps it in memory instead.
  // `step_value`, when given, is step_id as a JSON string (shared) for the event.
  bool stage_checkpoint(RunContext& ctx, const std::string& step_id, bool force, std::vector<std::string> ran,
                        const Value* step_value = nullptr);
  void save_stopped_run(RunContext& ctx);
  void finish_run(RunContext& ctx, RunStatus status, const std::string& error);
  // finish_run's last write, outside Engine::invoke: handed to
  // Store::write_batch_async, and what follows an end (listeners, waiters,
  // the parent's news, eviction) follows its callback. Meanwhile get_run
  // shows the stored record (RunContext::end_unconfirmed). False when there
  // is nothing to write so (the caller flushes and announces the end itself).
  bool write_end_async(RunContext& ctx);
  // recover() and takeovers: true when EngineOptions::resume_veto refused the
  // run, which is then failed with its answer. REQUIRES: ctx.mu held.
  bool vetoed_resume(RunContext& ctx);
  void pause_run(RunContext& ctx, const std::string& reason, const std::string& node);
  void evict_later(RunContext& ctx);
  void remember_functions(RunContext& ctx);
  // Drops the ended context of run `id` from runs_ unless it was restarted
  // since (generation). REQUIRES: no run lock held.
  void evict_ended(const std::string& id, uint64_t generation);
  // Drops an ended run's context from runs_ now (the caller holds no run lock).
  // False when the run is not this ended context any more (restarted).
  bool evict_now(const std::shared_ptr<RunContext>& ctx, const std::string& run_id, uint64_t generation);
  // Tracing (engine_trace.cc): opens the superstep's spans (and the run's
  // span first, when the run has none open); ends them all when the run
  // stops or pauses.
  void trace_superstep(RunContext& ctx);
  void end_trace(RunContext& ctx);
  // Stores an event: in the run's batch while it batches (or when
  // `into_batch`, for events that must be written with what is in the batch),
  // otherwise at once.
  void emit(RunContext& ctx, std::string_view kind, Value data, bool into_batch = false);
  void notify_listeners(const EventRecord& ev);
  // A run that ended hands its spare events to this thread's next runs.
  void recycle_spares(RunContext& ctx);
  // Store writes that join the run's batch while it is batching.
  void write_step(RunContext& ctx, StepRecord step);
  void write_pending(RunContext& ctx, PendingWrite write);
  // Builds the pending writes of finished tasks that still need one (their
  // superstep's checkpoint did not come first). Every write of the run's
  // batch calls it first.
  void write_due_pending(RunContext& ctx);
  // Writes the run's batch (if any) and tells listeners about its events.
  Status flush(RunContext& ctx);
  // flush, then `send` (a worker call) once the batch is written, without
  // waiting for the write: the batch goes to Store::write_batch_async and
  // `send` follows from its callback (with no batch, it follows the run's
  // write still in flight). With no `send`, only the write goes out.
  // REQUIRES: ctx->mu held.
  void flush_then_send(const std::shared_ptr<RunContext>& ctx, std::function<void()> send);
  // Moves the run's batch out for an asynchronous write: fenced, the run's
  // record copied in when due. REQUIRES: ctx.mu held, write_due_pending done.
  StoreBatch take_batch(RunContext& ctx, bool* deferred_checkpoint);
  // Hands `batch` to Store::write_batch_async; once it is written,
  // done(engine, status, written, inline_call) runs: inside this call on this
  // thread (`inline_call`, the caller's locks held; `key` tells it apart), or
  // on a store's thread, where the worker calls it releases go out as it
  // ends, and where it does not run once the engine is gone. engine.cc only.
  template <typename Done>
  void write_async(StoreBatch batch, const void* key, Done done);
  // The callback of flush_then_send's write. `inline_call`: it runs inside
  // write_batch_async (ctx->mu held), not on a store thread.
  void batch_written(const std::shared_ptr<RunContext>& ctx, InflightWrite& write, bool deferred_checkpoint,
                     Status status, StoreBatch& batch, bool inline_call);
  // Sends a worker call from the thread's ReplyScope, or from the pool.
  void send_call(std::function<void()>& send);
  // Whether this thread is a store's, inside flush_then_send's callback.
  static bool on_store_thread();
  // engine_lease.cc: fencing. Writes `batch` of `ctx`'s run with the run's
  // lease owner and epoch (outside the run's batch, for writes made while not
  // batching); a refused write drops the run (drop_lost_run).
  Status write_fenced(RunContext& ctx, StoreBatch batch);
  // Marks `batch` with the run's lease (when it has one).
  void fence(const RunContext& ctx, StoreBatch& batch) const;
  // When `status` says another owner took the run over: forgets the run here
  // (no more writes, calls abandoned, timers cancelled, context dropped) and
  // returns true. REQUIRES: ctx.mu held.
  bool drop_if_lease_lost(RunContext& ctx, const Status& status);
  // Whether a failed checkpoint write fails the run: not when the run was
  // dropped (lease lost), nor for a transient (Unavailable) store failure.
  bool commit_failure_fails_run(const RunContext& ctx, const Status& status) const;
  // A subgraph node relaunched in a loaded run (takeover, restart) whose
  // child run `child_id` exists: claims and continues the child, or hands
  // its outcome to the node at `index` of `parent` when it has stopped
  // already. False when there is no such child (start a new one).
  // With `item` >= 0, the child is that item's of the send node at `index`.
  bool resume_child(const std::weak_ptr<RunContext>& parent, uint64_t generation, size_t index,
                    const std::string& child_id, int64_t item = -1);
  // Holds a run's lock for a worker reply or a timer; the store writes made
  // under it go out as one batch (flushed before the lock is released), unless
  // an engine thread already batches for the run and will flush them itself.
  class BatchedRunLock {
   public:
    // `async`: a worker's reply is being handled; outside Engine::invoke the
    // run's writes then go out without this thread waiting for them
    // (RunContext::async_writes).
    BatchedRunLock(EngineImpl& engine, RunContext& ctx, bool async = false)
        : engine_(engine), ctx_(ctx), lock_(ctx.mu), current_(ctx.record.id) {
      owner_ = !ctx.batching;
      async_ = owner_ && async && !ctx.caller_drives;
      ctx.batching = true;
      ctx.async_writes = async_;
      ctx.start_stamping();
    }
    ~BatchedRunLock() {
      if (owner_) {
        if (async_) {
          engine_.flush_then_send(ctx_.shared_from_this(), nullptr);
        } else {
          (void)engine_.flush(ctx_);
        }
        ctx_.batching = false;
        ctx_.async_writes = false;
      }
      ctx_.stop_stamping();
    }
    BatchedRunLock(const BatchedRunLock&) = delete;
    BatchedRunLock& operator=(const BatchedRunLock&) = delete;

   private:
    EngineImpl& engine_;
    RunContext& ctx_;
    // Taken before the record is read: a flush lends the record to the store.
    std::lock_guard<std::mutex> lock_;  // released after the flush
    CurrentRun current_;                // a crash meanwhile is charged to this run
    bool owner_ = false;
    bool async_ = false;
  };
  void notify_status_change();
  // Wall-clock milliseconds for a record or event of `ctx`: read once per
  // stamping section (see RunContext::stamping), else read now.
  int64_t stamp_ms(RunContext& ctx) {
    if (!ctx.stamping) return options_.clock->now_ms();
    if (ctx.stamp < 0) ctx.stamp = options_.clock->now_ms();
    return ctx.stamp;
  }

  // node_exec.cc: running one node
  void launch_node(const std::shared_ptr<RunContext>& ctx, size_t index);
  void record_instant_step(RunContext& c, NodeTask& t, Value output);
  // The final record of a node that keeps none of its own while it runs (send,
  // subgraph; any node whose record was planned), written as it completes.
  void finish_step_record(RunContext& c, NodeTask& t);
  void launch_attempt(const std::shared_ptr<RunContext>& ctx, size_t index);
  void launch_send_items(const std::shared_ptr<RunContext>& ctx, size_t index);
  void on_item_reply(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item,
                     Result<ReplyEffects> effects, std::string output, bool retryable,
                     const std::string& worker_id = std::string());
  // A send item's worker call: its step record, written as the call starts
  // and as it ends.
  void record_item_call(RunContext& c, NodeTask& t, const Node& send, const Node& target, size_t item);
  void finish_item_call(RunContext& c, NodeTask& t, size_t item, const Result<ReplyEffects>& effects,
                        const std::string& output, const std::string& worker_id);
  void on_attempt_done(const std::shared_ptr<RunContext>& ctx, size_t index, uint64_t token,
                       Result<ReplyEffects> result, std::string output, std::string worker_id, bool retryable,
                       int64_t retry_after_ms);
  void fail_or_retry(const std::shared_ptr<RunContext>& ctx, size_t index, const std::string& error,
                     bool retryable, int64_t retry_after_ms);
  void start_subgraph(const std::shared_ptr<RunContext>& ctx, size_t index);
  // subgraph_node.cc: the child run that subgraph node `target` starts from
  // node task `index` (its workflow; its input from target's input_mapping,
  // the run's config, the trace parent), counted against the root run's
  // max_descendant_runs; an error says why no child may start. Shared by a
  // subgraph node and a send's items. REQUIRES: c's lock.
  struct ChildRunStart {
    std::shared_ptr<const Workflow> workflow;
    RunOptions options;
  };
  Result<ChildRunStart> prepare_child_run(RunContext& c, size_t index, const Node& target);
  // Where a child run goes: node task `index` (with `item` >= 0, that item
  // of a send) of `parent` at `generation`.
  struct ChildLaunch {
    std::weak_ptr<RunContext> parent;
    uint64_t generation = 0;
    size_t index = 0;
    int64_t item = -1;
    std::string parent_id;
    std::string node;
    int depth = 0;
    std::string root;
  };
  // Off the parent's lock: starts child run `options.run_id` (or, when
  // `resuming`, continues it if it exists); the error says why it could not
  // start. A parent cancelled meanwhile has the child cancelled.
  Status launch_child(const ChildLaunch& launch, std::shared_ptr<const Workflow> workflow, RunOptions options,
                      bool resuming);
  // Called once child run `child_id` has started (or resumed) off the
  // parent's lock: a parent cancelled meanwhile found no child to cancel
  // yet, so the child is cancelled here. Takes the parent's lock.
  void cancel_if_parent_cancelled(const std::weak_ptr<RunContext>& parent, const std::string& parent_id,
                                  const std::string& child_id);
  void notify_parent(RunContext& child);
  // Hands a stopped child's record to its parent run (off any run lock).
  void tell_parent(const std::string& parent_id, const RunRecord& child);
  void on_child_stopped(const std::shared_ptr<RunContext>& ctx, size_t index, const RunRecord& child);
  // Hands `child`'s stop to whichever node of `parent` waits for it (a
  // subgraph node, or a send's item); false when none does. REQUIRES: parent's lock.
  bool deliver_child_stop(const std::shared_ptr<RunContext>& parent, const RunRecord& child);
  // A parent paused only because a child paused, whose child has now ended:
  // running again. REQUIRES: its lock.
  void unpause_for_ended_child(RunContext& c, const RunRecord& child, const std::string& node);
  // send_children.cc: a send whose target is a subgraph node, a child run per
  // item. start_item_child records item `item`'s child (or takes over the
  // one a loaded run had) and returns what to start once that record is
  // stored; null when the item failed at once (its failure is posted).
  struct ItemChildStart {
    std::shared_ptr<const Workflow> workflow;
    RunOptions options;
    size_t item = 0;
    bool resuming = false;
  };
  std::optional<ItemChildStart> start_item_child(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item);
  void run_item_children(const std::shared_ptr<RunContext>& ctx, size_t index, std::vector<ItemChildStart> starts);
  void on_item_child_stopped(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item, const RunRecord& child);
  // An item's child could not start, be resumed, or ended without a result.
  void item_child_failed(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item, const std::string& child_id,
                         const std::string& error);
  void close_item_child_record(RunContext& c, NodeTask& t, size_t item, const Status& error, Value output);
  // A send item's end: its result (or error) and its state updates; launches
  // the next items, or completes the send with all of them.
  void item_finished(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item, const Status& error,
                     Value result, Value updates);
  Value state_with_meta(const RunContext& ctx, int vertex, int attempt) const;
  Result<std::string> render(const RunContext& ctx, const Template& tpl, const Value& state,
                             const Value* item, int attempt) const;
  void call_worker(const std::shared_ptr<RunContext>& ctx, WorkerRequest request,
                   std::function<void(WorkerReply)> done);
  // `done(Result<ReplyEffects> effects, std::string output)` (a lambda, kept
  // as it is inside the call's job: no std::function of its own). Defined
  // and used in node_exec.cc only.
  template <typename Done>
  void call_function(const std::shared_ptr<RunContext>& ctx, const Node& node, WorkerRequest request, Done done);

  // Runs `job` on the pool. A host's Store, Dispatcher or listener that
  // throws there is reported (run_guarded), not allowed to end the process.
  template <typename Job>
  void post(Job&& job) {
    asio::post(pool_, [job = std::forward<Job>(job)]() mutable { run_guarded("engine thread", job); });
  }

  EngineOptions options_;
  asio::thread_pool pool_;
  // Lets clock timers reach the engine only while it exists.
  struct Liveness {
    std::mutex mu;
    EngineImpl* engine = nullptr;
  };
  std::shared_ptr<Liveness> alive_;

  mutable std::mutex runs_mu_;
  std::unordered_map<std::string, std::shared_ptr<RunContext>> runs_;
  bool stopping_ = false;

  // Runs that ended are dropped from runs_; a workflow with C++ functions bound
  // cannot be rebuilt from JSON, so retry/fork/replay find it here.
  std::mutex ended_mu_;
  std::unordered_map<std::string, std::shared_ptr<const CompiledWorkflow>> ended_with_functions_;

  std::mutex compiled_mu_;
  std::unordered_map<const Workflow*, std::weak_ptr<CompiledWorkflow>> compiled_;
  size_t next_compiled_sweep_ = 64;
  static constexpr size_t kRecentCompiled = 16;
  std::deque<std::shared_ptr<const CompiledWorkflow>> recent_compiled_;  // newest first

  std::mutex subs_mu_;
  struct Subscription {
    uint64_t id;
    std::string run_id;
    EventListener listener;
  };
  // Replaced whole when a listener comes or goes, so that an event takes a
  // reference to the list rather than copying every listener (several
  // events a node).
  std::shared_ptr<const std::vector<Subscription>> subscriptions_ = std::make_shared<std::vector<Subscription>>();
  // subscriptions_->size(), read without the lock: with no listener at all,
  // events skip the lock.
  std::atomic<size_t> subscription_count_{0};
  uint64_t next_subscription_ = 1;

  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  uint64_t status_epoch_ = 0;

  ResultCache cache_;
  // Store::writes_without_waiting: worker replies are then handled on the
  // event loop that delivers them (call_worker).
  const bool store_writes_without_waiting_;

  // Subgraph runs started per top-level run (EngineOptions::max_descendant_runs).
  std::mutex descendants_mu_;
  std::unordered_map<std::string, size_t> descendants_;
  // Reserves a child run for the family of `root`; false at the limit.
  bool take_descendant(const std::string& root);
};

}  // namespace orch::internal
