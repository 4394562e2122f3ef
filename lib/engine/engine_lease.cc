// SPDX-License-Identifier: MIT
//
// The engine's side of leases with fencing (see Store::claim_run_lease): each
// run's writes carry this engine's owner id and the epoch of its lease on the
// run; when the store refuses one because another engine took the run over,
// the run is dropped here at once: its calls are abandoned, its timers
// cancelled, nothing more of it is written, and its context goes. The new
// owner continues it from what the store has.
#include "engine/engine_impl.h"

namespace orch::internal {

void EngineImpl::fence(const RunContext& ctx, StoreBatch& batch) const {
  if (ctx.lease_epoch <= 0) return;
  // The batch object is reused run after run: the owner is copied only once.
  if (batch.lease_owner != options_.owner_id) batch.lease_owner = options_.owner_id;
  batch.lease_epoch = ctx.lease_epoch;
}

Status EngineImpl::write_fenced(RunContext& ctx, StoreBatch batch) {
  if (ctx.lease_lost) return lease_lost_status(ctx.record.id, "was taken over by another owner");
  fence(ctx, batch);
  Status status = options_.store->write_batch(batch);
  (void)drop_if_lease_lost(ctx, status);
  return status;
}

bool EngineImpl::commit_failure_fails_run(const RunContext& ctx, const Status& status) const {
  if (status.ok() || ctx.lease_lost) return false;
  // Transient (the database restarting, a lost connection): the run keeps
  // going in memory and its next checkpoint carries the whole state again;
  // failing a healthy run for a blip of its store helps nobody.
  return status.code() != StatusCode::kUnavailable;
}

bool EngineImpl::drop_if_lease_lost(RunContext& ctx, const Status& status) {
  if (!lease_lost(status)) return false;
  if (ctx.lease_lost) return true;
  ctx.lease_lost = true;
  ++ctx.generation;  // every callback still in flight is dropped
  for (NodeTask& t : ctx.tasks) {
    if (t.timer) options_.clock->cancel(t.timer);
    if (!t.finished) cancel_calls(t.step_id);
  }
  ctx.in_superstep = false;
  // Only in memory, never written: stops advance() and finish_run() here.
  ctx.record.status = RunStatus::kCancelled;
  ctx.record.error = status.message();
  ctx.batch = StoreBatch();
  ctx.unsaved_checkpoint.reset();
  ctx.checkpoint_deferred = false;
  ctx.planned_steps.clear();
  if (ctx.parent_run_id.empty()) {
    std::lock_guard<std::mutex> lock(descendants_mu_);
    descendants_.erase(ctx.record.id);
  }
  // Off this run's lock (runs_mu_ is always taken before a run's mutex), as
  // evict_later does; only this very context, not one a later claim made.
  const RunContext* dropped = &ctx;
  std::string id = ctx.record.id;
  post([this, id, dropped] {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(id);
    if (it == runs_.end() || it->second.get() != dropped) return;
    std::shared_ptr<RunContext> ref = it->second;  // the mutex must outlive the erase
    std::lock_guard<std::mutex> run_lock(ref->mu);
    runs_.erase(it);
  });
  notify_status_change();
  return true;
}

Result<size_t> EngineImpl::take_over_expired_runs(size_t limit) {
  if (stopping_) return Status::unavailable("engine is shutting down");
  ORCH_ASSIGN_OR_RETURN(std::vector<std::string> ids, options_.store->list_expired_leases(limit));
  size_t taken = 0;
  for (const std::string& id : ids) {
    // Held here already: its lease only lapsed (the host renews it).
    if (find_context(id)) continue;
    // load_context claims first (bumping the epoch: the old owner is fenced
    // from then on) and reads the run after; Aborted: another engine was first.
    auto ctx = load_context(id);
    if (!ctx.ok()) continue;
    bool running = false;
    {
      std::lock_guard<std::mutex> lock((*ctx)->mu);
      running = (*ctx)->record.status == RunStatus::kRunning && !vetoed_resume(**ctx);
    }
    if (!running) {  // it ended between the listing and the claim
      (void)forget_context(id);
      continue;
    }
    schedule_advance(*ctx);
    ++taken;
  }
  return taken;
}

}  // namespace orch::internal

namespace orch::internal {

bool EngineImpl::resume_child(const std::weak_ptr<RunContext>& parent, uint64_t generation, size_t index,
                              const std::string& child_id, int64_t item) {
  auto child = load_context(child_id);  // claims it (its old owner is gone: it expired with the parent)
  if (!child.ok()) {
    if (child.status().code() == StatusCode::kNotFound) return false;  // never started: start it now
    auto locked = parent.lock();
    if (!locked) return true;
    BatchedRunLock lock(*this, *locked);
    if (locked->generation != generation || index >= locked->tasks.size()) return true;
    const std::string why = "subgraph run " + child_id + " could not be resumed: " + child.status().message();
    if (item >= 0) {
      item_child_failed(locked, index, static_cast<size_t>(item), child_id, why);
      return true;
    }
    NodeOutcome failed;
    failed.kind = NodeOutcome::Kind::kFailed;
    failed.error = why;
    complete_task(locked, index, std::move(failed), true);
    return true;
  }
  RunRecord record;
  {
    std::lock_guard<std::mutex> lock((*child)->mu);
    record = (*child)->record;
  }
  if (record.status == RunStatus::kRunning) {
    schedule_advance(*child);  // it tells the parent when it stops
    return true;
  }
  // It stopped before the parent heard of it: tell the parent now.
  auto locked = parent.lock();
  if (!locked) return true;
  BatchedRunLock lock(*this, *locked);
  if (locked->generation != generation || index >= locked->tasks.size()) return true;
  (void)deliver_child_stop(locked, record);  // unless the node heard of it already
  return true;
}

}  // namespace orch::internal
