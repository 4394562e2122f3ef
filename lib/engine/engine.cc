// SPDX-License-Identifier: MIT
//
// The engine: run lifecycle, supersteps, checkpoints and events. How one node
// executes is in node_exec.cc.
//
// A superstep: take the ready nodes, launch them all (in-process functions and
// worker calls go to the thread pool; route/transform/interrupt finish at once),
// and when the last one finishes apply every outcome in definition order,
// settle the scheduler, commit a checkpoint and start the next superstep.
#include "engine/engine_impl.h"
#include "engine/crash_guard.h"
#include "core/value_bytes.h"
#include "core/block_cache.h"

#include <algorithm>
#include <set>
#include <thread>
#include <asio/post.hpp>

#include "orch/event_kinds.h"
#include "orch/id.h"
#include "orch/state.h"
#include "orch/state_path.h"
#include "orch/thread_guard.h"

namespace orch::internal {
namespace {
// How many written events a run keeps for reuse (a superstep's worth).
constexpr size_t kSpareEvents = 32;
}  // namespace

Result<std::unique_ptr<orch::Engine>> EngineImpl::open(EngineOptions options) {
  if (!options.store) return Status::invalid_argument("EngineOptions.store is required");
  if (!options.crash_log_path.empty()) ORCH_RETURN_IF_ERROR(install_crash_guard(options.crash_log_path));
  if (!options.clock) options.clock = Clock::system();
  if (options.threads == 0) options.threads = std::max(2u, std::thread::hardware_concurrency());
  if (options.owner_id.empty()) options.owner_id = new_uuid();
  return std::unique_ptr<orch::Engine>(new EngineImpl(std::move(options)));
}

EngineImpl::EngineImpl(EngineOptions options)
    : options_(std::move(options)),
      pool_(options_.threads),
      alive_(std::make_shared<Liveness>()),
      cache_(options_.max_cached_results),
      store_writes_without_waiting_(options_.store->writes_without_waiting()) {
  alive_->engine = this;
}

EngineImpl::~EngineImpl() {
  {
    // Timers that would call back into this engine now find it gone.
    std::lock_guard<std::mutex> lock(alive_->mu);
    alive_->engine = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    stopping_ = true;
    for (auto& [id, ctx] : runs_) {
      std::lock_guard<std::mutex> run_lock(ctx->mu);
      ++ctx->generation;  // drop every callback still in flight
      for (NodeTask& t : ctx->tasks) {
        if (t.timer) options_.clock->cancel(t.timer);
      }
    }
  }
  pool_.join();
}

// ------------------------------------------------------------------ helpers

std::shared_ptr<RunContext> EngineImpl::find_context(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(runs_mu_);
  auto it = runs_.find(run_id);
  return it == runs_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<const CompiledWorkflow>> EngineImpl::compile(std::shared_ptr<const Workflow> wf) {
  {
    std::lock_guard<std::mutex> lock(compiled_mu_);
    auto it = compiled_.find(wf.get());
    if (it != compiled_.end()) {
      if (auto c = it->second.lock()) return std::shared_ptr<const CompiledWorkflow>(c);
    }
  }
  auto c = std::make_shared<CompiledWorkflow>();
  for (const Node& n : wf->nodes) {
    if (n.task.prompt_template) {
      size_t offset = 0;
      auto t = Template::compile(*n.task.prompt_template, &offset);
      if (!t.ok()) return Status::invalid_argument("node '" + n.name + "' prompt_template: " + t.status().message());
      c->prompts.emplace(n.name, std::move(t).value());
    }
    if (n.task.continuation_prompt) {
      auto t = Template::compile(*n.task.continuation_prompt);
      if (!t.ok()) return Status::invalid_argument("node '" + n.name + "' continuation_prompt: " + t.status().message());
      c->continuations.emplace(n.name, std::move(t).value());
    }
  }
  c->graph = CompiledGraph::compile(std::move(wf));
  std::lock_guard<std::mutex> lock(compiled_mu_);
  // Entries of workflows no run holds any more go once the map has doubled
  // (the server parses a fresh Workflow for each run it starts).
  if (compiled_.size() >= next_compiled_sweep_) {
    for (auto it = compiled_.begin(); it != compiled_.end();) it = it->second.expired() ? compiled_.erase(it) : std::next(it);
    next_compiled_sweep_ = std::max<size_t>(64, 2 * compiled_.size());
  }
  compiled_[&c->graph->workflow()] = c;
  // The newest few stay compiled with no run of theirs alive: a host that
  // starts runs of one Workflow one after another compiles it once.
  recent_compiled_.push_front(c);
  if (recent_compiled_.size() > kRecentCompiled) recent_compiled_.pop_back();
  return std::shared_ptr<const CompiledWorkflow>(c);
}

namespace {
// Written events of runs that ended on this thread, for the next runs' emit():
// a run's first events then reuse their buffers (run id, kind) instead of
// allocating them. Per thread, so taking one needs no lock.
thread_local std::vector<EventRecord> t_spare_events;
// Likewise the emptied batch of such a run (its vectors' capacity): the next
// run's writes fill it instead of regrowing fresh vectors (which moved every
// record at each doubling).
thread_local StoreBatch t_spare_batch;
// And its emptied superstep (RunContext::tasks): a NodeTask is large, so a
// superstep of a few nodes is an allocation big enough to be slow (glibc
// consolidates its free lists for it), once per run.
thread_local std::vector<NodeTask> t_spare_tasks;
}  // namespace

void EngineImpl::emit(RunContext& ctx, std::string_view kind, Value data, bool into_batch) {
  if (ctx.lease_lost) return;  // another owner has the run now
  const bool batched = ctx.batching || into_batch;
  // Built where it goes (the batch), from a spare when there is one: its run
  // id's and kind's buffers are reused.
  EventRecord unbatched;
  EventRecord* slot = &unbatched;
  if (!ctx.spare_events.empty()) {
    if (batched) {
      slot = &ctx.batch.events.emplace_back(std::move(ctx.spare_events.back()));
    } else {
      unbatched = std::move(ctx.spare_events.back());
    }
    ctx.spare_events.pop_back();
  } else if (batched) {
    slot = &ctx.batch.events.emplace_back();
  }
  EventRecord& ev = *slot;
  ev.seq = 0;
  ev.run_id = ctx.record.id;
  ev.kind.assign(kind.data(), kind.size());
  ev.data = std::move(data);
  ev.created_at_ms = stamp_ms(ctx);
  if (batched) return;
  auto seq = options_.store->append_event(ev);
  if (!seq.ok()) return;  // the run may have been deleted
  ev.seq = *seq;
  notify_listeners(ev);
}

void EngineImpl::recycle_spares(RunContext& ctx) {
  if (ctx.batch.empty() && ctx.batch.events.capacity() > t_spare_batch.events.capacity()) {
    t_spare_batch = std::move(ctx.batch);
    ctx.batch = StoreBatch();
    t_spare_batch.lease_owner.clear();  // another run's lease: not this one's (capacity kept)
    t_spare_batch.lease_epoch = 0;
    t_spare_batch.sync_to_disk = false;
  }
  for (EventRecord& ev : ctx.spare_events) ev.data = Value();  // the store's now: not kept alive here
  if (ctx.tasks.empty() && ctx.tasks.capacity() > t_spare_tasks.capacity()) std::swap(ctx.tasks, t_spare_tasks);
  if (ctx.spare_events.capacity() > t_spare_events.capacity()) std::swap(ctx.spare_events, t_spare_events);
  for (EventRecord& ev : ctx.spare_events) {
    if (t_spare_events.size() >= kSpareEvents) break;
    t_spare_events.push_back(std::move(ev));
  }
  ctx.spare_events.clear();
}

void EngineImpl::notify_listeners(const EventRecord& ev) {
  if (subscription_count_.load(std::memory_order_acquire) == 0) return;
  std::shared_ptr<const std::vector<Subscription>> subscriptions;
  {
    std::lock_guard<std::mutex> lock(subs_mu_);
    subscriptions = subscriptions_;
  }
  for (const Subscription& sub : *subscriptions) {
    if (sub.run_id.empty() || sub.run_id == ev.run_id) run_guarded("event listener", [&] { sub.listener(ev); });
  }
}

void EngineImpl::write_step(RunContext& ctx, StepRecord step) {
  if (ctx.batching) {
    ctx.batch.steps.push_back(std::move(step));
  } else if (!ctx.lease_lost) {
    (void)options_.store->put_step(step);
  }
}

void EngineImpl::write_pending(RunContext& ctx, PendingWrite write) {
  if (ctx.batching) {
    ctx.batch.pending_writes.push_back(std::move(write));
  } else if (!ctx.lease_lost) {
    (void)options_.store->put_pending_write(write);
  }
}

void EngineImpl::write_due_pending(RunContext& ctx) {
  if (ctx.pending_writes_due == 0) return;
  for (NodeTask& t : ctx.tasks) {
    if (!t.pending_write_due) continue;
    t.pending_write_due = false;
    write_pending(ctx, PendingWrite{ctx.record.id, ctx.version + 1, ctx.compiled->graph->name(t.vertex),
                                    t.outcome.to_value()});
  }
  ctx.pending_writes_due = 0;
}

Status EngineImpl::flush(RunContext& ctx) {
  write_due_pending(ctx);
  if (ctx.batch.empty() && !ctx.run_in_batch) return Status();
  StoreBatch batch = std::move(ctx.batch);
  ctx.batch = StoreBatch();
  const bool deferred_checkpoint = ctx.checkpoint_deferred;
  ctx.checkpoint_deferred = false;
  if (ctx.lease_lost) return lease_lost_status(ctx.record.id, "was taken over by another owner");
  fence(ctx, batch);
  // The run's record is lent to the store for the write: stores read it and
  // leave it as it was (StoreBatch::run), and readers of ctx.record hold the
  // run's lock, which is held here.
  const bool lent = ctx.run_in_batch;
  ctx.run_in_batch = false;
  if (lent) batch.run.emplace(std::move(ctx.record));
  Status s = options_.store->write_batch(batch);
  if (lent) ctx.record = std::move(*batch.run);
  if (drop_if_lease_lost(ctx, s)) return s;
  ctx.stamp = -1;  // a write takes time: later records read the clock again
  for (const EventRecord& ev : batch.events) {
    if (ev.seq > 0) notify_listeners(ev);  // events written before a failure still count
  }
  // The next batch reuses this one's vectors: growing fresh ones every
  // superstep cost more allocator work than the writes.
  batch.steps.clear();
  batch.pending_writes.clear();
  // Written events come back as spares for emit(): every one carries the
  // run's id, and reusing their strings saves an allocation each.
  for (EventRecord& ev : batch.events) {
    if (ctx.spare_events.size() >= kSpareEvents) break;
    ctx.spare_events.push_back(std::move(ev));
  }
  batch.events.clear();
  batch.checkpoint.reset();
  batch.earlier_checkpoint.reset();
  batch.run.reset();
  batch.create.reset();
  batch.sync_to_disk = false;
  if (ctx.batch.empty()) ctx.batch = std::move(batch);
  if (deferred_checkpoint && commit_failure_fails_run(ctx, s)) {
    finish_run(ctx, RunStatus::kFailed, "checkpoint failed: " + s.message());
  }
  return s;
}

namespace {
// The write whose callback runs inside this thread's write_batch_async call
// (a store without a writer thread of its own calls back at once).
thread_local const void* t_writing_inline = nullptr;
// This thread is a store's, calling back a write: no engine work runs here
// (it would hold up every other write, or wait for its own).
thread_local bool t_store_callback = false;

struct StoreCallbackMark {
  StoreCallbackMark() { t_store_callback = true; }
  ~StoreCallbackMark() { t_store_callback = false; }
};
}  // namespace

bool EngineImpl::on_store_thread() { return t_store_callback; }

template <typename Done>
void EngineImpl::write_async(StoreBatch batch, const void* key, Done done) {
  const void* outer = t_writing_inline;
  t_writing_inline = key;
  options_.store->write_batch_async(
      std::move(batch), [alive = alive_, key, done = std::move(done)](Status status, StoreBatch& written) mutable {
        if (t_writing_inline == key) {  // this engine's own thread, inside the call below (run lock held)
          done(*alive->engine, std::move(status), written, true);
          return;
        }
        // A store thread: the calls the write releases go out from it as
        // the callback ends, the engine kept alive meanwhile (a reply that
        // comes back at once is posted to it: call_worker).
        StoreCallbackMark mark;
        std::lock_guard<std::mutex> lock(alive->mu);
        ReplyScope sends;
        if (alive->engine == nullptr) return;  // the engine is gone: its runs resume from the store
        done(*alive->engine, std::move(status), written, false);
      });
  t_writing_inline = outer;
}

StoreBatch EngineImpl::take_batch(RunContext& c, bool* deferred_checkpoint) {
  StoreBatch batch = std::move(c.batch);
  c.batch = StoreBatch();
  *deferred_checkpoint = c.checkpoint_deferred;
  c.checkpoint_deferred = false;
  fence(c, batch);
  // Copied, not lent: the run's lock goes before the write is done.
  if (c.run_in_batch) batch.run = c.record;
  c.run_in_batch = false;
  c.stamp = -1;
  return batch;
}

void EngineImpl::send_call(std::function<void()>& send) {
  // From a store's thread or an event loop only a dispatcher that merely
  // queues the call sends it there; one that runs the worker gets an engine
  // thread.
  if ((t_store_callback || ReplyScope::on_event_loop()) && options_.dispatcher &&
      options_.dispatcher->runs_workers_inline()) {
    post(std::move(send));
    return;
  }
  if (!ReplyScope::defer(send)) post(std::move(send));
}

void EngineImpl::flush_then_send(const std::shared_ptr<RunContext>& ctx, std::function<void()> send) {
  RunContext& c = *ctx;
  write_due_pending(c);
  if (c.batch.empty() && !c.run_in_batch) {
    // Nothing new to write: the call waits only for what is still in flight
    // (a sibling call's batch holds this one's step record).
    if (send && (!c.inflight || !c.inflight->add(send))) send_call(send);
    return;
  }
  if (c.lease_lost) return;
  bool deferred_checkpoint = false;
  StoreBatch batch = take_batch(c, &deferred_checkpoint);
  auto write = std::make_shared<InflightWrite>();
  if (send) write->sends.push_back(std::move(send));
  c.inflight = write;
  write_async(std::move(batch), write.get(),
              [ctx, write, deferred_checkpoint](EngineImpl& engine, Status status, StoreBatch& written, bool inline_call) {
                engine.batch_written(ctx, *write, deferred_checkpoint, std::move(status), written, inline_call);
              });
}

void EngineImpl::batch_written(const std::shared_ptr<RunContext>& ctx, InflightWrite& write, bool deferred_checkpoint,
                               Status status, StoreBatch& batch, bool inline_call) {
  for (const EventRecord& ev : batch.events) {
    if (ev.seq > 0) notify_listeners(ev);  // events written before a failure still count
  }
  std::vector<std::function<void()>> sends = write.finish();
  if (status.ok()) {
    for (auto& send : sends) send_call(send);
    return;
  }
  // As flush(): a lost lease drops the run, a failed checkpoint fails it;
  // otherwise the calls still go out (their records will be written later).
  auto handle = [this, ctx, deferred_checkpoint, status, sends = std::move(sends)]() mutable {
    RunContext& c = *ctx;
    if (drop_if_lease_lost(c, status)) return;
    if (deferred_checkpoint && commit_failure_fails_run(c, status)) {
      finish_run(c, RunStatus::kFailed, "checkpoint failed: " + status.message());
    }
    if (is_terminal(c.record.status)) return;
    for (auto& send : sends) send_call(send);
  };
  if (inline_call) {
    handle();
  } else {
    post([this, ctx, handle = std::move(handle)]() mutable { locked_then_drain(ctx, [&] { handle(); }); });
  }
}

void EngineImpl::notify_status_change() {
  std::lock_guard<std::mutex> lock(wait_mu_);
  ++status_epoch_;
  wait_cv_.notify_all();
}

Status EngineImpl::commit(RunContext& ctx, const std::string& step_id, bool force,
                          std::vector<std::string> ran) {
  return stage_checkpoint(ctx, step_id, force, std::move(ran)) ? flush(ctx) : Status();
}

bool EngineImpl::stage_checkpoint(RunContext& ctx, const std::string& step_id, bool force,
                                  std::vector<std::string> ran, const Value* step_value) {
  // A batch holds one checkpoint: an earlier one still waiting goes first.
  // But the end follows the last superstep with nothing run between them: a
  // store that takes two checkpoints in one write gets both at once.
  if (ctx.batch.checkpoint) {
    if (step_id == kEndNode && !ctx.batch.earlier_checkpoint && options_.store->accepts_earlier_checkpoint()) {
      ctx.batch.earlier_checkpoint = std::move(ctx.batch.checkpoint);
      ctx.batch.checkpoint.reset();
    } else if (ctx.async_writes) {
      flush_then_send(ctx.shared_from_this(), nullptr);  // a failure is dealt with in its callback
    } else if (!flush(ctx).ok() && is_terminal(ctx.record.status)) {
      return false;
    }
  }
  Checkpoint cp;
  cp.id = new_uuid();
  cp.run_id = ctx.record.id;
  cp.parent_id = std::move(ctx.last_checkpoint_id);  // replaced by this one's id below
  cp.step_id = step_id;
  cp.version = ++ctx.version;
  cp.state = ctx.state;
  cp.completed_nodes = std::move(ran);
  cp.created_at_ms = stamp_ms(ctx);
  cp.metadata = ctx.scheduler->checkpoint_metadata();
  ctx.record.state = ctx.state;
  ctx.record.checkpoint_count += 1;
  ctx.record.updated_at_ms = cp.created_at_ms;
  ctx.last_checkpoint_id = cp.id;
  if (ctx.durability == Durability::kExit && !force) {
    ctx.unsaved_checkpoint = std::move(cp);
    return false;
  }
  ctx.unsaved_checkpoint.reset();
  // The checkpoint goes out with everything the superstep wrote before it,
  // and its event with it: both are written, or neither.
  Value created = Value::object({{"checkpoint_id", cp.id}, {"version", static_cast<long long>(cp.version)},
                                 {"step_id", step_value != nullptr ? *step_value : Value(step_id)}});
  ctx.batch.checkpoint = std::move(cp);
  ctx.run_in_batch = true;
  ctx.batch.sync_to_disk = ctx.durability == Durability::kFull;
  if (options_.node_events) emit(ctx, event_kind::kCheckpointCreated, std::move(created), /*into_batch=*/true);
  return true;
}

// A run pausing or ending: what was pending goes out, a run in "exit"
// durability writes its newest checkpoint now, and the run's record goes out
// with the events that follow it (one write when batching).
void EngineImpl::save_stopped_run(RunContext& ctx) {
  // While batching, the record joins what is pending (a final checkpoint, say):
  // one write. It is the newest record, so it may stand for the one staged.
  if (!ctx.batching || ctx.unsaved_checkpoint) (void)flush(ctx);
  if (ctx.unsaved_checkpoint) {
    StoreBatch checkpoint;  // fenced like every write of the run's progress
    checkpoint.checkpoint = std::move(*ctx.unsaved_checkpoint);
    checkpoint.run = ctx.record;
    ctx.unsaved_checkpoint.reset();
    (void)write_fenced(ctx, std::move(checkpoint));
  }
  if (ctx.lease_lost) return;
  if (ctx.batching) {
    ctx.run_in_batch = true;
  } else {
    StoreBatch update;
    update.run = ctx.record;
    (void)write_fenced(ctx, std::move(update));
  }
}

bool EngineImpl::take_descendant(const std::string& root) {
  std::lock_guard<std::mutex> lock(descendants_mu_);
  size_t& n = descendants_[root];
  if (options_.max_descendant_runs > 0 && n >= options_.max_descendant_runs) return false;
  ++n;
  return true;
}

void EngineImpl::finish_run(RunContext& ctx, RunStatus status, const std::string& error) {
  if (is_terminal(ctx.record.status)) return;
  if (ctx.parent_run_id.empty()) {
    std::lock_guard<std::mutex> lock(descendants_mu_);
    descendants_.erase(ctx.record.id);
  }
  ctx.record.status = status;
  ctx.record.error = error;
  ctx.record.ended_at_ms = options_.clock->now_ms();
  ctx.record.updated_at_ms = ctx.record.ended_at_ms;
  ctx.record.state = ctx.state;
  ++ctx.generation;
  for (NodeTask& t : ctx.tasks) {
    if (t.timer) options_.clock->cancel(t.timer);
    if (!t.finished) cancel_calls(t.step_id);
    if (!t.finished && t.in_process && t.step.id == t.step_id && status == RunStatus::kCancelled) {
      // An in-process call in flight has no stored record yet (it is written
      // when the call ends): it is stored skipped, as a running one would be.
      StepRecord step = std::move(t.step);
      t.step = StepRecord();
      step.status = StepStatus::kSkipped;
      step.ended_at_ms = ctx.record.ended_at_ms;
      write_step(ctx, std::move(step));
    }
  }
  ctx.in_superstep = false;
  // Planned step records of nodes that never ran are closed, not left pending.
  for (auto& [node, step_id] : ctx.planned_steps) {
    StepRecord step;
    step.id = step_id;
    step.run_id = ctx.record.id;
    step.node_name = node;
    const Node* n = ctx.compiled->graph->workflow().find_node(node);
    step.type = n != nullptr ? std::string(node_type_name(n->type)) : "task";
    step.status = StepStatus::kSkipped;
    step.created_at_ms = step.ended_at_ms = ctx.record.ended_at_ms;
    write_step(ctx, std::move(step));
  }
  ctx.planned_steps.clear();
  save_stopped_run(ctx);
  if (ctx.trace) end_trace(ctx);
  if (status == RunStatus::kCompleted) {
    emit(ctx, event_kind::kRunCompleted, Value::object({{"state", ctx.state}}));
  } else if (status == RunStatus::kFailed) {
    emit(ctx, event_kind::kRunFailed, Value::object({{"error", error}}));
  } else if (status == RunStatus::kCancelled) {
    emit(ctx, event_kind::kRunCancelled, Value::object());
  }
  if (ctx.async_writes && write_end_async(ctx)) return;
  (void)flush(ctx);  // readers woken below see everything
  recycle_spares(ctx);
  notify_parent(ctx);
  notify_status_change();
  evict_later(ctx);
}

bool EngineImpl::write_end_async(RunContext& c) {
  write_due_pending(c);
  if (c.caller_drives || c.lease_lost || (c.batch.empty() && !c.run_in_batch)) return false;
  bool deferred_checkpoint = false;  // a failed checkpoint cannot fail a run that ended
  StoreBatch batch = take_batch(c, &deferred_checkpoint);
  c.end_unconfirmed.store(true, std::memory_order_release);
  remember_functions(c);
  // What follows the end, read now under the run's lock: the callback takes
  // none (on a store's thread it could wait on a writer that waits for it).
  std::string parent_id = c.parent_run_id;
  RunRecord for_parent;
  if (!parent_id.empty()) for_parent = c.record;
  auto after = [this, parent_id = std::move(parent_id), for_parent = std::move(for_parent), id = c.record.id,
                gen = c.generation] {
    if (!parent_id.empty()) tell_parent(parent_id, for_parent);
    evict_ended(id, gen);
  };
  std::shared_ptr<RunContext> ctx = c.shared_from_this();
  recycle_spares(c);
  write_async(std::move(batch), ctx.get(),
              [ctx, after = std::move(after)](EngineImpl& engine, Status status, StoreBatch& written, bool) mutable {
                for (const EventRecord& ev : written.events) {
                  if (ev.seq > 0) engine.notify_listeners(ev);
                }
                if (status.ok()) ctx->end_unconfirmed.store(false, std::memory_order_release);
                engine.notify_status_change();
                engine.post(std::move(after));
              });
  return true;
}

// Drops an ended run's context from runs_ (off this run's lock: runs_mu_ is
// always taken before a run's mutex). Its data is all in the store.
void EngineImpl::evict_later(RunContext& ctx) {
  remember_functions(ctx);
  if (ctx.caller_drives) {
    ctx.evict_by_caller = true;  // Engine::invoke's thread does it, off this lock
    return;
  }
  post([this, id = ctx.record.id, gen = ctx.generation] { evict_ended(id, gen); });
}

// A workflow with C++ functions bound cannot be rebuilt from JSON: retry,
// fork and replay of the ended run find it here.
void EngineImpl::remember_functions(RunContext& ctx) {
  bool has_functions = false;
  for (const Node& n : ctx.compiled->graph->workflow().nodes) has_functions = has_functions || bool(n.function);
  if (has_functions) {
    std::lock_guard<std::mutex> lock(ended_mu_);
    ended_with_functions_[ctx.record.id] = ctx.compiled;
  }
}

void EngineImpl::evict_ended(const std::string& id, uint64_t gen) {
  std::lock_guard<std::mutex> lock(runs_mu_);
  auto it = runs_.find(id);
  if (it == runs_.end()) return;
  // Hold our own reference: erasing the map entry must not destroy the
  // context (and the mutex we hold) under us.
  std::shared_ptr<RunContext> ctx_ref = it->second;
  std::lock_guard<std::mutex> run_lock(ctx_ref->mu);
  // Only if nothing restarted it meanwhile (retry/replay make a new context).
  if (ctx_ref->generation == gen && is_terminal(ctx_ref->record.status)) runs_.erase(it);
}

bool EngineImpl::evict_now(const std::shared_ptr<RunContext>& ctx, const std::string& run_id, uint64_t generation) {
  std::lock_guard<std::mutex> lock(runs_mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end() || it->second != ctx) return false;
  std::lock_guard<std::mutex> run_lock(ctx->mu);
  if (ctx->generation != generation || !is_terminal(ctx->record.status)) return false;
  runs_.erase(it);
  return true;
}

void EngineImpl::pause_run(RunContext& ctx, const std::string& reason, const std::string& node) {
  ctx.record.status = RunStatus::kInterrupted;
  ctx.record.updated_at_ms = options_.clock->now_ms();
  save_stopped_run(ctx);
  if (ctx.trace) end_trace(ctx);
  emit(ctx, event_kind::kRunInterrupted, Value::object({{"reason", reason}, {"node", node}}));
  (void)flush(ctx);
  notify_parent(ctx);
  notify_status_change();
}

// ------------------------------------------------------------------ runs

Result<std::string> EngineImpl::start_run(std::shared_ptr<const Workflow> workflow, RunOptions options) {
  if (!workflow) return Status::invalid_argument("workflow is required");
  return start_run_internal(std::move(workflow), std::move(options), "", "", 0);
}

Result<std::string> EngineImpl::start_run_internal(std::shared_ptr<const Workflow> workflow, RunOptions options,
                                                    const std::string& parent_run_id,
                                                    const std::string& parent_node, int depth,
                                                    const std::string& root_run_id) {
  ORCH_ASSIGN_OR_RETURN(auto ctx, new_run_context(std::move(workflow), options, parent_run_id, parent_node, depth, root_run_id));
  ORCH_RETURN_IF_ERROR(open_run(ctx, options.plan_steps));
  std::string id;
  {
    std::lock_guard<std::mutex> lock(ctx->mu);
    id = ctx->record.id;
    if (is_terminal(ctx->record.status)) return id;  // its first checkpoint failed
  }
  schedule_advance(ctx);
  return id;
}

Result<RunRecord> EngineImpl::invoke(std::shared_ptr<const Workflow> workflow, RunOptions options) {
  if (!workflow) return Status::invalid_argument("workflow is required");
  ORCH_ASSIGN_OR_RETURN(auto ctx, new_run_context(std::move(workflow), options, "", "", 0, ""));
  const std::string id = ctx->record.id;
  ctx->caller_drives = true;  // from the start: a run whose first checkpoint fails is evicted here too
  ORCH_RETURN_IF_ERROR(open_run(ctx, options.plan_steps));
  const uint64_t gen = ctx->generation;
  // This thread executes the run, in-process calls included, until it ends or
  // has to wait for a worker, a timer or a child run.
  locked_then_drain(ctx, [&] {
    if (ctx->generation == gen && ctx->record.status == RunStatus::kRunning) advance(ctx);
  });
  bool evict = false;
  uint64_t ended_generation = 0;
  {
    std::lock_guard<std::mutex> lock(ctx->mu);
    ctx->caller_drives = false;
    evict = ctx->evict_by_caller;
    ctx->evict_by_caller = false;
    ended_generation = ctx->generation;
    if (!evict && ctx->record.status != RunStatus::kRunning && ctx->record.status != RunStatus::kPending) {
      return ctx->record;  // interrupted: the run stays live for resume_run
    }
  }
  if (!evict) return wait(id, std::chrono::hours(24 * 365 * 100));  // the rest happens on other threads
  const bool evicted = evict_now(ctx, id, ended_generation);
  std::lock_guard<std::mutex> lock(ctx->mu);
  if (!evicted) return ctx->record;  // restarted meanwhile (retry_run, replay_run)
  // Nobody finds this context any more (get_run reads the store for a taken
  // record): its record is handed over, not copied.
  ctx->record_taken = true;
  return std::move(ctx->record);
}

Result<std::shared_ptr<RunContext>> EngineImpl::new_run_context(std::shared_ptr<const Workflow> workflow,
                                                                RunOptions& options,
                                                                const std::string& parent_run_id,
                                                                const std::string& parent_node, int depth,
                                                                const std::string& root_run_id) {
  if (stopping_) return Status::unavailable("engine is shutting down");
  if (options_.max_live_runs > 0) {
    std::lock_guard<std::mutex> lock(runs_mu_);
    if (runs_.size() >= options_.max_live_runs) {
      return Status::resource_exhausted("this engine already holds " + std::to_string(runs_.size()) +
                                        " runs (max_live_runs); try again when some have ended");
    }
  }
  ORCH_ASSIGN_OR_RETURN(auto compiled, compile(workflow));
  if (!options.config.is_object()) return Status::invalid_argument("config must be an object");

  auto ctx = make_cached_shared<RunContext>();  // one per run: see block_cache.h
  RunRecord& r = ctx->record;
  r.id = options.run_id.empty() ? new_uuid() : options.run_id;
  r.status = RunStatus::kRunning;
  r.workflow_id = options.workflow_id.empty() ? workflow->id : options.workflow_id;
  r.workflow = workflow->definition;
  r.input = options.input.is_null() ? Value::object() : options.input;
  Value config = workflow->defaults.is_object() ? workflow->defaults : Value::object();
  for (const auto& [k, v] : options.config.as_object()) config.set(k, v);
  r.config = config;
  r.host_data = options.host_data;
  r.idempotency_key = options.idempotency_key;
  r.parent_run_id = parent_run_id;
  r.parent_node = parent_node;
  r.created_at_ms = r.started_at_ms = r.updated_at_ms = options_.clock->now_ms();
  ctx->compiled = compiled;
  ctx->depth = depth;
  ctx->parent_run_id = parent_run_id;
  ctx->root_run_id = root_run_id.empty() ? r.id : root_run_id;
  ctx->traceparent = std::move(options.traceparent);
  ORCH_RETURN_IF_ERROR(configure(*ctx));
  // Non-object input is kept reachable as {{input}} but contributes no state keys.
  ctx->state = initial_state(r.input, *workflow);
  if (!config.as_object().empty()) ctx->state.set("__config", config);
  r.state = ctx->state;
  ctx->scheduler = std::make_unique<Scheduler>(compiled->graph);
  return ctx;
}

Status EngineImpl::open_run(const std::shared_ptr<RunContext>& ctx, bool plan) {
  RunContext& c = *ctx;
  const std::string id = c.record.id;  // nobody else knows the run yet
  Status failure = Status::internal("not written");
  {
    // Nobody else knows the run yet; the lock is for the helpers that expect it.
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.batch.empty()) std::swap(c.batch, t_spare_batch);  // see t_spare_batch
    if (c.spare_events.empty()) std::swap(c.spare_events, t_spare_events);  // and t_spare_events
    if (c.tasks.capacity() == 0) std::swap(c.tasks, t_spare_tasks);        // and t_spare_tasks
    c.batching = true;
    c.start_stamping();
    c.batch.create.emplace();
    c.batch.create->run = c.record;
    c.batch.create->owner = options_.owner_id;
    c.batch.create->lease_ms = options_.lease_ms;
    if (plan) plan_steps(c);
    c.scheduler->start();
    emit(c, event_kind::kRunStarted, Value::object({{"input", c.record.input}}));
    (void)stage_checkpoint(c, "__init__", false, {});
    // Unfenced (lease_epoch 0): nobody else can hold a run not yet created.
    Status s = flush(c);
    c.batching = false;
    c.stop_stamping();
    // A run created claimed is at its first epoch (Store::claim_run_lease);
    // its writes are fenced from here on.
    c.lease_epoch = 1;
    if (s.ok()) {
      failure = Status();
    } else {
      // Nothing of the run was stored, unless a store that writes a batch
      // item by item created it and failed later: that run is failed below.
      if (s.code() == StatusCode::kAlreadyExists) return s;
      if (!options_.store->get_run(c.record.id).ok()) return s;
      failure = s;
    }
  }
  {
    std::lock_guard<std::mutex> runs_lock(runs_mu_);
    runs_[id] = ctx;
  }
  if (!failure.ok()) {
    std::lock_guard<std::mutex> lock(c.mu);
    finish_run(c, RunStatus::kFailed, "checkpoint failed: " + failure.message());
  }
  return Status();
}

// Writes a pending record for every node, whose first execution takes it over.
void EngineImpl::plan_steps(RunContext& c) {
  const CompiledGraph& g = *c.compiled->graph;
  for (const Node& n : g.workflow().nodes) {
    StepRecord step;
    step.id = new_uuid();
    step.run_id = c.record.id;
    step.node_name = n.name;
    step.type = std::string(node_type_name(n.type));
    step.status = StepStatus::kPending;
    step.max_attempts = n.task.retry.max_attempts;
    step.created_at_ms = stamp_ms(c);
    c.planned_steps[n.name] = step.id;
    write_step(c, std::move(step));
  }
}

// Reads per-run settings from the workflow and the run's config.
Status EngineImpl::configure(RunContext& ctx) {
  const Workflow& wf = ctx.compiled->graph->workflow();
  const Value& config = ctx.record.config;
  ctx.recursion_limit = wf.recursion_limit.value_or(options_.default_recursion_limit);
  if (const Value* rl = config.find("recursion_limit")) {
    if (rl->get_int(0) < 1) return Status::invalid_argument("config.recursion_limit must be a positive integer");
    ctx.recursion_limit = rl->get_int(1);
  }
  ctx.durability = options_.durability;
  std::string durability = wf.durability.value_or("");
  if (const Value* d = config.find("durability")) durability = d->get_string("");
  if (!durability.empty()) {
    std::optional<Durability> named = durability_from_name(durability);
    if (!named) return Status::invalid_argument("durability must be sync, full or exit, not '" + durability + "'");
    ctx.durability = *named;
  }
  const CompiledGraph& g = *ctx.compiled->graph;
  auto mark = [&g](std::vector<bool>* set, const std::string& name) {
    int v = g.vertex(name);
    if (v < 0) return false;
    if (set->empty()) set->assign(g.vertex_count(), false);
    (*set)[static_cast<size_t>(v)] = true;
    return true;
  };
  for (const std::string& n : wf.interrupt_before) (void)mark(&ctx.break_before, n);
  for (const std::string& n : wf.interrupt_after) (void)mark(&ctx.break_after, n);
  for (auto [key, set] : {std::pair{"interrupt_before", &ctx.break_before}, std::pair{"interrupt_after", &ctx.break_after}}) {
    const Value& names = config[key];
    if (names.is_null()) continue;
    if (!names.is_array()) return Status::invalid_argument(std::string("config.") + key + " must be an array of node names");
    for (const Value& n : names.as_array()) {
      if (!n.is_string() || !mark(set, n.as_string())) {
        return Status::invalid_argument(std::string("config.") + key + " names unknown node " + n.to_json());
      }
    }
  }
  return Status();
}

void EngineImpl::schedule_advance(const std::shared_ptr<RunContext>& ctx) {
  uint64_t gen = ctx->generation;
  post([this, ctx, gen] {
    locked_then_drain(ctx, [&] {
      if (ctx->generation == gen) advance(ctx);
    });
  });
}

void EngineImpl::cancel_calls(const std::string& step_id) {
  std::shared_ptr<Dispatcher> dispatcher = options_.dispatcher;
  if (!dispatcher) return;
  post([dispatcher, step_id] { run_guarded("worker dispatcher cancel", [&] { dispatcher->cancel(step_id); }); });
}

void EngineImpl::locked_then_drain(const std::shared_ptr<RunContext>& ctx, BodyRef body) {
  std::unique_lock<std::mutex> lock(ctx->mu);  // first: a flush lends the record to the store
  CurrentRun current(ctx->record.id);           // what a crash on this thread is charged to
  const bool outer = !ctx->draining;
  ctx->draining = true;
  ctx->batching = true;
  ctx->start_stamping();
  body();
  if (!outer) {
    ctx->stop_stamping();  // the lock goes: the next holder reads the clock again
    return;
  }
  std::vector<std::function<void()>> work;
  while (!ctx->inline_work.empty()) {
    work.swap(ctx->inline_work);
    // In-process nodes may take long: what came before them is written first.
    // Under Engine::invoke only a pending checkpoint is (durability): a
    // superstep's start events and records otherwise go out with its results,
    // one write fewer per run.
    if (!ctx->caller_drives || ctx->batch.checkpoint || ctx->run_in_batch) (void)flush(*ctx);
    if (ctx->lease_lost) work.clear();  // refused: the run is another engine's now, run none of it
    ctx->stop_stamping();
    lock.unlock();
    for (auto& job : work) job();
    work.clear();
    lock.lock();
    ctx->start_stamping();
  }
  ctx->inline_work.swap(work);  // keeps the capacity for the next node
  // Nothing this thread wrote may wait for another thread to come by, unless
  // one surely comes: a sibling in-process call of the superstep still
  // running, whose completion writes it all (one write per superstep,
  // whatever the number of parallel nodes).
  bool sibling_flushes = ctx->in_superstep && ctx->outstanding > 0 && !ctx->checkpoint_deferred;
  for (const NodeTask& t : ctx->tasks) {
    if (!sibling_flushes) break;
    if (!t.finished && !(t.in_process && t.step.id == t.step_id)) sibling_flushes = false;
  }
  if (!sibling_flushes) (void)flush(*ctx);
  ctx->batching = false;
  ctx->draining = false;
  ctx->stop_stamping();
}

// Starts supersteps until one has to wait for work, or the run stops.
// REQUIRES: ctx->mu held.
void EngineImpl::advance(const std::shared_ptr<RunContext>& ctx) {
  RunContext& c = *ctx;
  // A superstep of route/transform/interrupt nodes finishes inside
  // start_superstep and calls back here: that inner call returns at once and
  // this loop starts the next superstep, so the stack does not grow with the
  // number of supersteps (a 100 000-step loop must not overflow it).
  if (c.advancing) return;
  c.advancing = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{c.advancing};
  while (c.record.status == RunStatus::kRunning && !c.in_superstep) {
    apply_injections(c, "");
    Scheduler& s = *c.scheduler;
    if (!s.has_ready() && !s.release_deferred()) {
      if (s.end_reached()) {
        // While batching, the final checkpoint goes out with the run's end
        // (finish_run's write): one commit.
        if (stage_checkpoint(c, std::string(kEndNode), true, {std::string(kEndNode)}) && !c.batching) (void)flush(c);
        finish_run(c, RunStatus::kCompleted, "");
      } else {
        auto joined = [](const std::vector<std::string>& names) {
          std::string out;
          for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
          return out;
        };
        // When nothing waits, every path on was cut (a route that chose no edge).
        const std::string waiting = joined(s.waiting_nodes());
        const std::string cut = waiting.empty() ? joined(s.cut_nodes()) : std::string();
        const std::string why = !waiting.empty() ? " (waiting: " + waiting + ")"
                                : !cut.empty()   ? " (no edge led on from: " + cut + ")"
                                                 : std::string();
        finish_run(c, RunStatus::kFailed, "run is stuck: no node can become ready and __end__ was not reached" + why);
      }
      return;
    }
    // Superstep k (1-based) runs while the newest checkpoint has version
    // k - 1 (__init__ is version 0), so `limit` supersteps are allowed.
    if (c.version >= c.recursion_limit) {
      finish_run(c, RunStatus::kFailed,
                 "recursion limit of " + std::to_string(c.recursion_limit) + " supersteps reached");
      return;
    }
    std::vector<int> ready = s.take_ready();
    // interrupt_before: pause before the superstep, once per arrival.
    for (int v : ready) {
      const std::string& name = c.compiled->graph->name(v);
      if (c.breaks_before(v) && !s.breakpoint_passed(v)) {
        for (int w : ready) {
          if (c.breaks_before(w)) s.set_breakpoint_passed(w);
        }
        s.restore_ready(ready);
        (void)commit(c, name, true);
        pause_run(c, "interrupt_before", name);
        return;
      }
    }
    for (int v : ready) s.clear_breakpoint_passed(v);
    start_superstep(ctx, ready);
  }
}

void EngineImpl::start_superstep(const std::shared_ptr<RunContext>& ctx, const std::vector<int>& ready) {
  RunContext& c = *ctx;
  c.in_superstep = true;
  c.tasks.clear();
  c.tasks.resize(ready.size());
  c.outstanding = ready.size();
  for (size_t i = 0; i < ready.size(); ++i) {
    NodeTask& t = c.tasks[i];
    t.vertex = ready[i];
    t.step_id = new_uuid();
    t.started_ms = stamp_ms(c);
    // Async workers: a step that was waiting for a reply when the run was
    // loaded resumes under its id and attempt (same call id).
    auto resumed = c.resumable_steps.find(c.compiled->graph->name(t.vertex));
    if (resumed != c.resumable_steps.end()) {
      t.step_id = resumed->second.first;
      t.attempt = resumed->second.second;
      auto child = c.resumable_children.find(resumed->first);
      if (child != c.resumable_children.end()) t.child_run_id = child->second;  // see start_subgraph
    } else if (!c.planned_steps.empty()) {
      auto planned = c.planned_steps.find(c.compiled->graph->name(t.vertex));
      if (planned != c.planned_steps.end()) {
        t.step_id = std::move(planned->second);
        t.planned = true;
        c.planned_steps.erase(planned);
      }
    }
  }
  c.resumable_steps.clear();  // only the superstep the run was loaded in
  c.resumable_children.clear();
  if (options_.tracer) trace_superstep(c);
  for (size_t i = 0; i < ready.size() && c.in_superstep; ++i) {
    NodeTask& t = c.tasks[i];
    const std::string& name = c.compiled->graph->name(t.vertex);
    auto recorded = c.recorded.find(name);
    if (recorded != c.recorded.end()) {
      // Finished before a crash: reuse its recorded result, do not run it again.
      NodeOutcome o = NodeOutcome::from_value(recorded->second);
      c.recorded.erase(recorded);
      complete_task(ctx, i, std::move(o), false);
      continue;
    }
    const CompiledGraph& g = *c.compiled->graph;
    if (options_.node_events) emit(c, event_kind::kTaskStart, Value::object({{"id", t.step_id_value()}, {"name", g.name_value(t.vertex)}, {"type", g.type_value(t.vertex)}}));
    launch_node(ctx, i);
  }
}

// Records a finished node. REQUIRES: ctx->mu held.
void EngineImpl::complete_task(const std::shared_ptr<RunContext>& ctx, size_t index, NodeOutcome outcome,
                               bool record) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  if (t.finished) return;
  if (t.timer) {
    options_.clock->cancel(t.timer);
    t.timer = 0;
  }
  t.finished = true;
  t.outcome = std::move(outcome);
  if (record) finish_step_record(c, t);
  if (c.trace) {
    const bool failed = t.outcome.kind == NodeOutcome::Kind::kFailed;
    c.trace->end_node(index, failed, t.outcome.error, t.outcome.usage);
  }
  const std::string& name = c.compiled->graph->name(t.vertex);
  // A finished node's result is kept (a pending write) so that a restart, or
  // a retry after a sibling failed, does not run it again. The last node of a
  // superstep in which nothing failed needs none when batching: the
  // superstep's checkpoint joins the same batch.
  bool checkpoint_follows = c.outstanding == 1 && c.batching && c.durability != Durability::kExit;
  for (const NodeTask& other : c.tasks) {
    if (other.finished && other.outcome.kind == NodeOutcome::Kind::kFailed) checkpoint_follows = false;
  }
  if (record && t.outcome.kind != NodeOutcome::Kind::kFailed && !checkpoint_follows) {
    if (c.batching && c.durability != Durability::kExit) {
      t.pending_write_due = true;  // built only if the batch goes out first
      ++c.pending_writes_due;
    } else {
      write_pending(c, PendingWrite{c.record.id, c.version + 1, name, t.outcome.to_value()});
    }
  }
  if (options_.node_events) emit(c, event_kind::kTaskResult, Value::object({{"id", t.step_id_value()}, {"name", c.compiled->graph->name_value(t.vertex)},
                                        {"ok", t.outcome.kind != NodeOutcome::Kind::kFailed},
                                        {"duration_ms", static_cast<long long>(stamp_ms(c) - t.started_ms)}}));
  if (--c.outstanding == 0) finish_superstep(ctx);
}

void EngineImpl::finish_superstep(const std::shared_ptr<RunContext>& ctx) {
  RunContext& c = *ctx;
  const CompiledGraph& g = *c.compiled->graph;
  const Workflow& wf = g.workflow();
  Scheduler& s = *c.scheduler;
  c.in_superstep = false;

  // Parallel failure: the run fails. Finished siblings keep their recorded
  // results (pending writes), so retry_run re-runs only the failed nodes.
  std::string failure;
  for (NodeTask& t : c.tasks) {
    if (t.outcome.kind == NodeOutcome::Kind::kFailed) {
      failure += (failure.empty() ? "" : "; ") + std::string("node '") + g.name(t.vertex) +
                 "' failed: " + t.outcome.error;
    }
  }
  if (c.trace) c.trace->end_superstep(failure);
  if (!failure.empty()) {
    finish_run(c, RunStatus::kFailed, failure);
    return;
  }

  // Apply outcomes in definition order (tasks are in vertex order already).
  // Ephemeral keys written by the previous superstep were visible to this one;
  // they go now, before this superstep's writes land.
  Value state = c.state;
  clear_ephemeral_keys(&state, wf);
  bool interrupt = false;
  std::string interrupt_node;
  std::string step_names;
  std::vector<std::string> ran;
  ran.reserve(c.tasks.size());
  for (NodeTask& t : c.tasks) {
    const std::string& name = g.name(t.vertex);
    step_names += (step_names.empty() ? "" : ",") + name;
    ran.push_back(name);
    Value node_updates = Value::object();
    for (const Value& u : t.outcome.updates) {
      Status st = apply_updates(&state, u, &wf);
      if (!st.ok()) {
        finish_run(c, RunStatus::kFailed, "node '" + name + "': state update failed: " + st.message());
        return;
      }
      if (t.outcome.updates.size() == 1) {
        node_updates = u;  // the usual case: nothing to merge
      } else if (u.is_object()) {
        for (const auto& [k, v] : u.as_object()) node_updates.set(k, v);
      }
    }
    if (!t.outcome.usage.is_null()) {
      c.record.input_tokens += t.outcome.usage["input_tokens"].get_int(0);
      c.record.output_tokens += t.outcome.usage["output_tokens"].get_int(0);
    }
    if (options_.node_events) emit(c, event_kind::kUpdates, Value::object({{"step", g.name_value(t.vertex)}, {"updates", node_updates}}));
    if (t.outcome.custom.is_array()) {
      for (const Value& m : t.outcome.custom.as_array()) emit(c, event_kind::kCustom, m);
    }
    // Scheduling effects.
    std::vector<int> targets;
    bool use_goto = t.outcome.has_goto;
    if (use_goto) {
      for (const std::string& tn : t.outcome.goto_nodes) {
        int v = g.vertex(tn);
        if (v < 0 || v == kStartVertex) {
          finish_run(c, RunStatus::kFailed, "node '" + name + "' returned goto to unknown node '" + tn + "'");
          return;
        }
        targets.push_back(v);
      }
    }
    s.node_finished(t.vertex, t.outcome.route ? &*t.outcome.route : nullptr, use_goto ? &targets : nullptr);
    if (t.outcome.kind == NodeOutcome::Kind::kInterrupt && !interrupt) {
      interrupt = true;
      interrupt_node = name;
    }
  }
  if (options_.max_state_bytes > 0) {
    const bool unknown = c.state_bytes < 0;
    for (NodeTask& t : c.tasks) {
      for (const Value& u : t.outcome.updates) {
        if (!unknown) c.state_bytes += static_cast<int64_t>(value_bytes(u));
      }
    }
    // The running figure only grows (a replaced value is counted again), so
    // it is measured exactly once it passes the limit.
    if (unknown || c.state_bytes > static_cast<int64_t>(options_.max_state_bytes)) {
      c.state_bytes = static_cast<int64_t>(value_bytes(state));
      if (c.state_bytes > static_cast<int64_t>(options_.max_state_bytes)) {
        finish_run(c, RunStatus::kFailed,
                   "the updates of node(s) '" + step_names + "' would make the state " + std::to_string(c.state_bytes) +
                       " bytes, over the limit of " + std::to_string(options_.max_state_bytes) + " (max_state_bytes)");
        return;
      }
    }
  }
  c.state = std::move(state);
  // Injections addressed to nodes of this superstep apply after their updates.
  for (NodeTask& t : c.tasks) apply_injections(c, g.name(t.vertex));
  s.settle();
  if (!interrupt) {
    for (NodeTask& t : c.tasks) {
      if (c.breaks_after(t.vertex)) {
        interrupt = true;
        interrupt_node = g.name(t.vertex);
        break;
      }
    }
  }
  // A one-node superstep is named by its node (a shared Value).
  Value step_value = c.tasks.size() == 1 ? g.name_value(c.tasks.front().vertex) : Value(step_names);
  c.tasks.clear();
  c.pending_writes_due = 0;  // the checkpoint staged below keeps these results
  // The "values" event joins its checkpoint's batch (a store may then keep the
  // state once for both).
  const bool staged = stage_checkpoint(c, step_names, interrupt, std::move(ran), &step_value);
  if (is_terminal(c.record.status)) return;  // an earlier checkpoint failed
  if (options_.node_events) emit(c, event_kind::kValues, Value::object({{"step", step_value}, {"state", c.state}}), /*into_batch=*/true);
  if (staged && c.batching && !interrupt) {
    // Whoever batches flushes before the run's lock goes (and before a call
    // is sent): the checkpoint can share that transaction.
    c.checkpoint_deferred = true;
  } else if (staged || !c.batching) {
    Status st = flush(c);
    if (commit_failure_fails_run(c, st)) {
      finish_run(c, RunStatus::kFailed, "checkpoint failed: " + st.message());
      return;
    }
    if (c.lease_lost) return;  // dropped: another owner has the run
  }
  if (interrupt) {
    pause_run(c, "interrupt", interrupt_node);
    return;
  }
  advance(ctx);
}

void EngineImpl::apply_injections(RunContext& c, const std::string& node) {
  if (c.injections.empty()) return;
  auto it = c.injections.begin();
  while (it != c.injections.end()) {
    if (it->after_node == node) {
      Status s = apply_updates(&c.state, it->updates, &c.compiled->graph->workflow());
      emit(c, event_kind::kStateInjected, Value::object({{"updates", it->updates}, {"applied", s.ok()}, {"error", s.message()}}));
      it = c.injections.erase(it);
    } else {
      ++it;
    }
  }
}

// ------------------------------------------------------------------ control API

Status EngineImpl::resume_run(const std::string& run_id, const Value& state_updates) {
  ORCH_ASSIGN_OR_RETURN(auto ctx, load_context(run_id));
  std::lock_guard<std::mutex> lock(ctx->mu);
  if (ctx->record.status != RunStatus::kInterrupted) {
    return Status::failed_precondition("run is not interrupted (current: " +
                                       std::string(run_status_name(ctx->record.status)) + ")");
  }
  if (!state_updates.is_null()) {
    ORCH_RETURN_IF_ERROR(apply_updates(&ctx->state, state_updates, &ctx->compiled->graph->workflow()));
  }
  ctx->record.status = RunStatus::kRunning;
  ctx->record.updated_at_ms = options_.clock->now_ms();
  ctx->record.state = ctx->state;
  ORCH_RETURN_IF_ERROR(options_.store->update_run(ctx->record));
  ctx->paused_for_child = false;
  emit(*ctx, event_kind::kRunResumed, Value::object({{"state_updates", state_updates}}));
  // A node waiting on an interrupted child (a subgraph node, a send's items):
  // resume the child instead. Children that are not paused refuse.
  if (ctx->in_superstep) {
    for (NodeTask& t : ctx->tasks) {
      if (t.finished) continue;
      for (std::string& child : t.child_runs()) {
        post([this, child = std::move(child)] { (void)resume_run(child, Value()); });
      }
    }
    return Status();
  }
  schedule_advance(ctx);
  return Status();
}

Status EngineImpl::cancel_run(const std::string& run_id) {
  auto ctx = find_context(run_id);
  if (!ctx) {
    ORCH_ASSIGN_OR_RETURN(RunRecord r, options_.store->get_run(run_id));
    if (is_terminal(r.status)) {
      return Status::failed_precondition("run already " + std::string(run_status_name(r.status)));
    }
    ORCH_ASSIGN_OR_RETURN(ctx, load_context(run_id));
  }
  std::vector<std::string> children;
  {
    std::lock_guard<std::mutex> lock(ctx->mu);
    if (is_terminal(ctx->record.status)) {
      return Status::failed_precondition("run already " + std::string(run_status_name(ctx->record.status)));
    }
    for (const NodeTask& t : ctx->tasks) {
      for (std::string& child : t.child_runs()) children.push_back(std::move(child));
    }
    (void)flush(*ctx);  // steps an engine thread has not written yet
    auto steps = options_.store->list_steps(run_id);
    if (steps.ok()) {
      for (StepRecord& st : *steps) {
        if (st.status == StepStatus::kPending || st.status == StepStatus::kReady || st.status == StepStatus::kRunning) {
          st.status = StepStatus::kSkipped;
          st.ended_at_ms = options_.clock->now_ms();
          write_step(*ctx, st);
        }
      }
    }
    finish_run(*ctx, RunStatus::kCancelled, "");
  }
  for (const std::string& child : children) (void)cancel_run(child);
  return Status();
}

Status EngineImpl::retry_run(const std::string& run_id) {
  ORCH_ASSIGN_OR_RETURN(RunRecord r, options_.store->get_run(run_id));
  if (r.status != RunStatus::kFailed) {
    return Status::failed_precondition("only failed runs can be retried (current: " +
                                       std::string(run_status_name(r.status)) + ")");
  }
  // Claimed before anything is changed: another engine may hold the run.
  ORCH_RETURN_IF_ERROR(options_.store->claim_run_lease(run_id, options_.owner_id, options_.lease_ms).status());
  std::shared_ptr<const CompiledWorkflow> live = forget_context(run_id);
  r.status = RunStatus::kRunning;
  r.error.clear();
  r.ended_at_ms = 0;
  ORCH_RETURN_IF_ERROR(options_.store->update_run(r));
  ORCH_ASSIGN_OR_RETURN(auto ctx, load_context(run_id, live));
  std::lock_guard<std::mutex> lock(ctx->mu);
  emit(*ctx, event_kind::kRunRetried, Value::object());
  schedule_advance(ctx);
  return Status();
}

Result<std::string> EngineImpl::fork_run(const std::string& checkpoint_id, const Value& state_overrides) {
  ORCH_ASSIGN_OR_RETURN(Checkpoint cp, options_.store->get_checkpoint(checkpoint_id));
  ORCH_ASSIGN_OR_RETURN(RunRecord source, options_.store->get_run(cp.run_id));
  std::shared_ptr<const CompiledWorkflow> compiled;
  if (auto live = find_context(source.id)) {
    std::lock_guard<std::mutex> lock(live->mu);
    compiled = live->compiled;
  } else if (std::lock_guard<std::mutex> lock(ended_mu_); ended_with_functions_.count(source.id)) {
    compiled = ended_with_functions_[source.id];
  } else {
    ORCH_ASSIGN_OR_RETURN(auto parsed, workflow_of(source));
    ORCH_ASSIGN_OR_RETURN(compiled, compile(parsed));
  }
  const Workflow* workflow = &compiled->graph->workflow();
  auto ctx = make_cached_shared<RunContext>();  // one per run: see block_cache.h
  RunRecord& r = ctx->record;
  r = source;
  r.id = new_uuid();
  r.status = RunStatus::kRunning;
  r.error.clear();
  r.idempotency_key.clear();
  r.forked_from_run_id = source.id;
  r.forked_from_checkpoint_id = cp.id;
  r.created_at_ms = r.started_at_ms = r.updated_at_ms = options_.clock->now_ms();
  r.ended_at_ms = 0;
  r.checkpoint_count = 0;
  r.input_tokens = r.output_tokens = 0;
  ctx->compiled = compiled;
  ORCH_RETURN_IF_ERROR(configure(*ctx));
  ctx->state = cp.state;
  if (!state_overrides.is_null()) ORCH_RETURN_IF_ERROR(apply_updates(&ctx->state, state_overrides, workflow));
  ORCH_ASSIGN_OR_RETURN(Scheduler sched, Scheduler::from_value(compiled->graph, cp.metadata["scheduler"]));
  ctx->scheduler = std::make_unique<Scheduler>(std::move(sched));
  r.state = ctx->state;
  // Claimed at creation: an unowned running run is any engine's to take over.
  ORCH_RETURN_IF_ERROR(options_.store->create_claimed_run(r, options_.owner_id, options_.lease_ms));
  ctx->lease_epoch = 1;
  {
    std::lock_guard<std::mutex> runs_lock(runs_mu_);
    runs_[r.id] = ctx;
  }
  std::lock_guard<std::mutex> lock(ctx->mu);
  emit(*ctx, event_kind::kRunForked, Value::object({{"from_run_id", source.id}, {"from_checkpoint_id", cp.id}}));
  ctx->last_checkpoint_id = cp.id;  // __fork__'s parent: the source checkpoint, in the other run (as NullBoiler)
  ORCH_RETURN_IF_ERROR(commit(*ctx, "__fork__", true));
  schedule_advance(ctx);
  return r.id;
}

Status EngineImpl::replay_run(const std::string& run_id, const std::string& checkpoint_id) {
  ORCH_ASSIGN_OR_RETURN(Checkpoint cp, options_.store->get_checkpoint(checkpoint_id));
  if (cp.run_id != run_id) return Status::invalid_argument("checkpoint " + checkpoint_id + " does not belong to run " + run_id);
  // Claimed before anything is changed: another engine may hold the run.
  ORCH_RETURN_IF_ERROR(options_.store->claim_run_lease(run_id, options_.owner_id, options_.lease_ms).status());
  std::shared_ptr<const CompiledWorkflow> live = forget_context(run_id);
  ORCH_RETURN_IF_ERROR(options_.store->truncate_checkpoints(run_id, cp.version));
  ORCH_ASSIGN_OR_RETURN(RunRecord r, options_.store->get_run(run_id));
  r.status = RunStatus::kRunning;
  r.error.clear();
  r.ended_at_ms = 0;
  r.state = cp.state;
  ORCH_RETURN_IF_ERROR(options_.store->update_run(r));
  ORCH_ASSIGN_OR_RETURN(auto ctx, load_context(run_id, live));
  std::lock_guard<std::mutex> lock(ctx->mu);
  emit(*ctx, event_kind::kRunReplayed, Value::object({{"checkpoint_id", checkpoint_id}}));
  schedule_advance(ctx);
  return Status();
}

Status EngineImpl::inject_state(const std::string& run_id, const Value& updates, const std::string& after_node) {
  if (!updates.is_object()) return Status::invalid_argument("updates must be an object");
  // A run that ended is changed from what the store has, as retry_run reads
  // it: a context still here holds its scheduler as the run ended (a failed
  // node no longer ready), which a checkpoint must not keep.
  std::shared_ptr<const CompiledWorkflow> live;
  if (auto current = get_run(run_id); current.ok() && is_terminal(current->status)) live = forget_context(run_id);
  ORCH_ASSIGN_OR_RETURN(auto ctx, load_context(run_id, live));
  std::unique_lock<std::mutex> lock(ctx->mu);
  // As NullBoiler, a run that ended takes updates too (fix its state, then
  // retry it): they go into a checkpoint of their own, the run keeps its
  // status. Not after a node: none runs again unless the run is retried.
  const bool ended = is_terminal(ctx->record.status);
  if (ended && !after_node.empty()) {
    return Status::failed_precondition("run already " + std::string(run_status_name(ctx->record.status)) +
                                       ": apply_after_step needs a run still going (without it the updates apply now)");
  }
  if (!after_node.empty()) {
    if (!ctx->compiled->graph->workflow().find_node(after_node)) {
      return Status::invalid_argument("apply_after_step names unknown node '" + after_node + "'");
    }
    ctx->injections.push_back({updates, after_node});
    return Status();
  }
  if (ctx->in_superstep) {
    ctx->injections.push_back({updates, ""});  // at the end of the superstep in flight
    return Status();
  }
  ORCH_RETURN_IF_ERROR(apply_updates(&ctx->state, updates, &ctx->compiled->graph->workflow()));
  ctx->record.state = ctx->state;
  --ctx->version;  // re-commit at the same version: an injection is not a superstep
  ORCH_RETURN_IF_ERROR(commit(*ctx, "__inject__", true));
  emit(*ctx, event_kind::kStateInjected, Value::object({{"updates", updates}, {"applied", true}}));
  if (ended) {
    // Nothing ends this context later: it goes now, the store has it all.
    (void)flush(*ctx);
    lock.unlock();
    forget_context(run_id);
  }
  return Status();
}

Status EngineImpl::delete_run(const std::string& run_id) {
  auto r = get_run(run_id);
  if (!r.ok()) return r.status();
  if (!is_terminal(r->status)) {
    Status cancelled = cancel_run(run_id);
    // Held by another engine: pulling the run out from under it is not ours to do.
    if (cancelled.code() == StatusCode::kAborted) return cancelled;
  }
  forget_context(run_id);
  {
    std::lock_guard<std::mutex> lock(ended_mu_);
    ended_with_functions_.erase(run_id);
  }
  return options_.store->delete_run(run_id);
}

Result<RunRecord> EngineImpl::get_run(const std::string& run_id) {
  if (auto ctx = find_context(run_id)) {
    std::lock_guard<std::mutex> lock(ctx->mu);
    // A taken record was handed to invoke's caller; a dropped run's record
    // is its new owner's: the store has both.
    // An end not yet confirmed by the store is not shown: the store's record is.
    if (!ctx->record_taken && !ctx->lease_lost && !ctx->end_unconfirmed.load(std::memory_order_acquire)) {
      return ctx->record;
    }
  }
  return options_.store->get_run(run_id);
}

Result<RunRecord> EngineImpl::wait(const std::string& run_id, std::chrono::milliseconds timeout) {
  // The run lock and wait_mu_ are never held together here: status changes
  // take the run lock first, then wait_mu_, so we only read an epoch under
  // wait_mu_ and look at the run without it.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(wait_mu_);
      seen = status_epoch_;
    }
    ORCH_ASSIGN_OR_RETURN(RunRecord r, get_run(run_id));
    if (r.status != RunStatus::kRunning && r.status != RunStatus::kPending) return r;
    std::unique_lock<std::mutex> lock(wait_mu_);
    if (!wait_cv_.wait_until(lock, deadline, [&] { return status_epoch_ != seen; })) {
      lock.unlock();
      ORCH_ASSIGN_OR_RETURN(RunRecord last, get_run(run_id));
      if (last.status != RunStatus::kRunning && last.status != RunStatus::kPending) return last;
      return Status::deadline_exceeded("run " + run_id + " still " + std::string(run_status_name(last.status)));
    }
  }
}

uint64_t EngineImpl::subscribe(const std::string& run_id, EventListener listener) {
  std::lock_guard<std::mutex> lock(subs_mu_);
  uint64_t id = next_subscription_++;
  auto next = std::make_shared<std::vector<Subscription>>(*subscriptions_);
  next->push_back(Subscription{id, run_id, std::move(listener)});
  subscription_count_.store(next->size(), std::memory_order_release);
  subscriptions_ = std::move(next);
  return id;
}

void EngineImpl::unsubscribe(uint64_t subscription) {
  std::lock_guard<std::mutex> lock(subs_mu_);
  auto next = std::make_shared<std::vector<Subscription>>(*subscriptions_);
  next->erase(std::remove_if(next->begin(), next->end(), [&](const Subscription& s) { return s.id == subscription; }),
              next->end());
  subscription_count_.store(next->size(), std::memory_order_release);
  subscriptions_ = std::move(next);
}

bool EngineImpl::holds_run(const std::string& run_id) const {
  std::shared_ptr<RunContext> ctx;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return false;
    ctx = it->second;
  }
  std::lock_guard<std::mutex> lock(ctx->mu);
  return !ctx->lease_lost;
}

size_t EngineImpl::active_runs() const {
  std::lock_guard<std::mutex> lock(runs_mu_);
  size_t n = 0;
  for (const auto& [id, ctx] : runs_) {
    std::lock_guard<std::mutex> run_lock(ctx->mu);
    if (ctx->record.status == RunStatus::kRunning) ++n;
  }
  return n;
}

// ------------------------------------------------------------------ loading

// Drops the live context of a run (abandoning anything in flight) and returns
// its compiled workflow, which keeps C++ functions bound to nodes.
std::shared_ptr<const CompiledWorkflow> EngineImpl::forget_context(const std::string& run_id) {
  std::shared_ptr<RunContext> ctx;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return nullptr;
    ctx = it->second;
    runs_.erase(it);
  }
  std::lock_guard<std::mutex> lock(ctx->mu);
  ++ctx->generation;
  for (NodeTask& t : ctx->tasks) {
    if (t.timer) options_.clock->cancel(t.timer);
  }
  return ctx->compiled;
}

Result<std::shared_ptr<const Workflow>> EngineImpl::workflow_of(const RunRecord& r) {
  // A host resolver comes first: it can bind C++ functions again, which the
  // stored JSON definition cannot.
  if (options_.workflow_resolver && !r.workflow_id.empty()) return options_.workflow_resolver(r.workflow_id);
  if (!r.workflow.is_null()) return parse_workflow(r.workflow);
  if (!r.workflow_id.empty()) return resolve_workflow(r.workflow_id);
  return Status::failed_precondition("run " + r.id + " has no stored definition (built in C++); it cannot be reloaded");
}

Result<std::shared_ptr<const Workflow>> EngineImpl::resolve_workflow(const std::string& id) {
  if (options_.workflow_resolver) return options_.workflow_resolver(id);
  ORCH_ASSIGN_OR_RETURN(WorkflowRecord w, options_.store->get_workflow(id));
  return parse_workflow(w.definition);
}

// Returns the live context of a run, rebuilding it from the store (latest
// checkpoint + recorded node results) when this engine does not hold it.
Result<std::shared_ptr<RunContext>> EngineImpl::load_context(const std::string& run_id,
                                                             std::shared_ptr<const CompiledWorkflow> compiled) {
  if (auto ctx = find_context(run_id)) return ctx;
  // Another engine on a shared database may own the run (SPEC.md §11). The
  // claim comes before the reads: once it moved the run here (a new epoch)
  // the previous owner can write nothing more, so what is read next is final.
  ORCH_ASSIGN_OR_RETURN(const int64_t lease_epoch,
                        options_.store->claim_run_lease(run_id, options_.owner_id, options_.lease_ms));
  ORCH_ASSIGN_OR_RETURN(RunRecord r, options_.store->get_run(run_id));
  if (!compiled) {
    std::lock_guard<std::mutex> lock(ended_mu_);
    auto it = ended_with_functions_.find(run_id);
    if (it != ended_with_functions_.end()) compiled = it->second;
  }
  if (!compiled) {
    ORCH_ASSIGN_OR_RETURN(auto workflow, workflow_of(r));
    ORCH_ASSIGN_OR_RETURN(compiled, compile(workflow));
  }
  auto latest = options_.store->latest_checkpoint(run_id);
  Checkpoint cp;
  if (latest.ok()) {
    cp = std::move(latest).value();
  } else if (latest.status().code() == StatusCode::kNotFound) {
    // Created, but stopped before its first checkpoint: it starts from its
    // stored initial state, exactly as it would have.
    Scheduler fresh(compiled->graph);
    fresh.start();
    cp.state = r.state;
    cp.metadata = Value::object({{"scheduler", fresh.to_value()}});
  } else {
    return latest.status();
  }
  auto ctx = make_cached_shared<RunContext>();  // one per run: see block_cache.h
  ctx->lease_epoch = lease_epoch;
  ctx->record = r;
  ctx->compiled = compiled;
  ORCH_RETURN_IF_ERROR(configure(*ctx));
  ctx->state = cp.state;
  ctx->version = cp.version;
  ctx->last_checkpoint_id = cp.id;
  ctx->parent_run_id = r.parent_run_id;
  ORCH_ASSIGN_OR_RETURN(Scheduler sched, Scheduler::from_value(compiled->graph, cp.metadata["scheduler"]));
  ctx->scheduler = std::make_unique<Scheduler>(std::move(sched));
  auto writes = options_.store->list_pending_writes(run_id);
  if (writes.ok()) {
    for (const PendingWrite& w : *writes) {
      if (w.superstep == cp.version + 1) ctx->recorded[w.node_name] = w.result;
    }
  }
  // Async workers: steps still running in the superstep being resumed keep
  // their id and attempt (see RunContext::resumable_steps).
  auto steps = options_.store->list_steps(run_id);
  if (steps.ok()) {
    for (const StepRecord& s : *steps) {
      if (s.status == StepStatus::kPending && s.superstep == 0) ctx->planned_steps[s.node_name] = s.id;
      if (s.item_index >= 0 && !s.child_run_id.empty() && s.superstep == cp.version + 1) {
        ctx->resumable_item_children[s.node_name] = s;  // a send's item child (send_children.cc)
        continue;
      }
      if (s.status != StepStatus::kRunning || s.superstep != cp.version + 1 || s.item_index >= 0) continue;
      auto& slot = ctx->resumable_steps[s.node_name];
      if (slot.first.empty() || s.attempt > slot.second) slot = {s.id, s.attempt};
      if (!s.child_run_id.empty()) ctx->resumable_children[s.node_name] = s.child_run_id;
    }
  }
  std::lock_guard<std::mutex> lock(runs_mu_);
  auto [it, inserted] = runs_.emplace(run_id, ctx);
  return it->second;
}

bool EngineImpl::vetoed_resume(RunContext& c) {
  if (!options_.resume_veto) return false;
  std::string why;
  if (!run_guarded("resume_veto", [&] { why = options_.resume_veto(c.record); })) {
    why = "the host's resume_veto threw an exception";
  }
  if (why.empty()) return false;
  finish_run(c, RunStatus::kFailed, why);
  return true;
}

Status EngineImpl::recover() {
  RunFilter filter;
  filter.status = RunStatus::kRunning;
  filter.limit = SIZE_MAX;
  ORCH_ASSIGN_OR_RETURN(auto runs, options_.store->list_runs(filter));
  std::set<std::string> crashed;
  if (!options_.crash_log_path.empty()) {
    for (std::string& id : take_crash_log(options_.crash_log_path)) crashed.insert(std::move(id));
  }
  Status first_error;
  bool retry_later = false;
  for (const RunRecord& r : runs) {
    if (find_context(r.id)) continue;
    if (!r.parent_run_id.empty()) continue;  // children continue through their parents
    auto ctx = load_context(r.id);
    if (!ctx.ok()) {
      // Another owner's lease (e.g. a crashed process with a different
      // owner_id): try again once it has expired.
      if (ctx.status().code() == StatusCode::kAborted) {
        retry_later = true;
        continue;
      }
      if (first_error.ok()) first_error = ctx.status();
      continue;
    }
    std::lock_guard<std::mutex> lock((*ctx)->mu);
    RunContext& c = **ctx;
    if (vetoed_resume(c)) continue;
    if (crashed.count(c.record.id)) {
      // The process crashed while executing this run. After a few such
      // resumes the run itself is taken to be the cause: it is failed
      // instead of crashing the process on every restart.
      if (options_.max_recoveries > 0 && c.record.recoveries >= options_.max_recoveries) {
        finish_run(c, RunStatus::kFailed,
                   "the process crashed while executing this run, and it was resumed " +
                       std::to_string(c.record.recoveries) +
                       " times already; not resuming it again (max_recoveries)");
        continue;
      }
      c.record.recoveries += 1;
      Status saved = options_.store->update_run(c.record);
      if (!saved.ok()) {
        if (first_error.ok()) first_error = saved;
        continue;
      }
    }
    schedule_advance(*ctx);
  }
  // With a takeover loop in the host (recover_retries_leased_runs false),
  // that loop claims them once their leases run out.
  if (retry_later && options_.recover_retries_leased_runs) {
    std::weak_ptr<Liveness> alive = alive_;
    options_.clock->call_after(std::chrono::milliseconds(options_.lease_ms), [alive] {
      auto a = alive.lock();
      if (!a) return;
      std::lock_guard<std::mutex> lock(a->mu);
      if (a->engine != nullptr) (void)a->engine->recover();
    });
  }
  return first_error;
}

}  // namespace orch::internal

namespace orch {
Result<std::unique_ptr<Engine>> Engine::open(EngineOptions options) {
  return internal::EngineImpl::open(std::move(options));
}
}  // namespace orch
