// SPDX-License-Identifier: MIT
// The in-memory Store: maps under one mutex. Values share storage, so keeping
// a full state per checkpoint costs only what each step changed.
#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "orch/store.h"
#include "store/store_batch.h"

namespace orch {
namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// now + lease_ms, saturating; a negative lease is none.
int64_t lease_expiry(int64_t now, int64_t lease_ms) {
  lease_ms = std::max<int64_t>(lease_ms, 0);
  return lease_ms > std::numeric_limits<int64_t>::max() - now ? std::numeric_limits<int64_t>::max() : now + lease_ms;
}

class MemoryStore final : public Store {
 public:
  Status create_run(const RunRecord& run) override {
    std::lock_guard<std::mutex> lock(mu_);
    return create_locked(RunRecord(run));
  }

  Status update_run(const RunRecord& run) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run.id);
    if (it == runs_.end()) return Status::not_found("run " + run.id + " not found");
    it->second.record = run;
    return Status();
  }

  Result<RunRecord> get_run(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    return it->second.record;
  }

  Result<RunRecord> find_run_by_idempotency_key(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idempotency_.find(key);
    if (it == idempotency_.end()) return Status::not_found("no run with idempotency key " + key);
    return runs_.at(it->second).record;
  }

  Result<std::vector<RunRecord>> list_runs(const RunFilter& filter) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<RunRecord> out;
    size_t skipped = 0;
    // Newest first.
    for (auto it = order_.rbegin(); it != order_.rend() && out.size() < filter.limit; ++it) {
      const RunRecord& r = runs_.at(*it).record;
      if (filter.status && r.status != *filter.status) continue;
      if (!filter.workflow_id.empty() && r.workflow_id != filter.workflow_id) continue;
      if (!filter.parent_run_id.empty() && r.parent_run_id != filter.parent_run_id) continue;
      if (skipped++ < filter.offset) continue;
      out.push_back(r);
    }
    return out;
  }

  Status delete_run(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    for (const Checkpoint& cp : it->second.checkpoints) checkpoint_run_.erase(cp.id);
    for (const auto& [id, step] : it->second.steps) step_run_.erase(id);
    if (!it->second.record.idempotency_key.empty()) idempotency_.erase(it->second.record.idempotency_key);
    order_.erase(std::remove(order_.begin(), order_.end(), run_id), order_.end());
    keep_spare(runs_.extract(it));
    return Status();
  }

  Status claim_run(const std::string& run_id, const std::string& owner, int64_t lease_ms) override {
    return claim_run_lease(run_id, owner, lease_ms).status();
  }

  Result<int64_t> claim_run_lease(const std::string& run_id, const std::string& owner, int64_t lease_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    RunData& d = it->second;
    const int64_t now = wall_ms();
    // An ended run is anyone's to claim (a retry or replay through another engine).
    if (!d.lease_owner.empty() && d.lease_owner != owner && d.lease_expires_ms > now && !is_terminal(d.record.status)) {
      return Status::aborted("run " + run_id + " is leased by " + d.lease_owner);
    }
    if (d.lease_owner != owner) ++d.lease_epoch;  // a takeover (or the first owner)
    d.lease_owner = owner;
    d.lease_expires_ms = lease_expiry(now, lease_ms);
    return d.lease_epoch;
  }

  Status check_lease(const std::string& run_id, const std::string& owner, int64_t epoch) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    return fence(run_id, it->second, owner, epoch);
  }

  Result<int64_t> renew_leases(const std::string& owner, int64_t lease_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t expiry = lease_expiry(wall_ms(), lease_ms);
    int64_t renewed = 0;
    for (auto& [id, d] : runs_) {
      if (d.lease_owner != owner || owner.empty() || is_terminal(d.record.status)) continue;
      d.lease_expires_ms = expiry;
      ++renewed;
    }
    return renewed;
  }

  Result<bool> claim_singleton(const std::string& name, const std::string& owner, int64_t lease_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = wall_ms();
    auto& [holder, expires] = singletons_[name];
    if (!holder.empty() && holder != owner && expires > now) return false;
    holder = owner;
    expires = lease_expiry(now, lease_ms);
    return true;
  }

  Result<std::vector<std::string>> list_expired_leases(size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = wall_ms();
    std::vector<std::string> out;
    for (const std::string& id : order_) {  // oldest first
      if (out.size() >= limit) break;
      const RunData& d = runs_.at(id);
      if (d.record.status != RunStatus::kRunning || !d.record.parent_run_id.empty()) continue;
      if (d.lease_owner.empty() || d.lease_expires_ms <= now) out.push_back(id);
    }
    return out;
  }

  Status commit_checkpoint(const Checkpoint& checkpoint, const RunRecord& run, bool) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run.id);
    if (it == runs_.end()) return Status::not_found("run " + run.id + " not found");
    it->second.checkpoints.push_back(checkpoint);
    checkpoint_run_[checkpoint.id] = &it->first;
    it->second.record = run;
    it->second.pending_writes.clear();
    return Status();
  }

  Result<Checkpoint> get_checkpoint(const std::string& checkpoint_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto owner = checkpoint_run_.find(checkpoint_id);
    if (owner == checkpoint_run_.end()) return Status::not_found("checkpoint " + checkpoint_id + " not found");
    for (const Checkpoint& cp : runs_.at(*owner->second).checkpoints) {
      if (cp.id == checkpoint_id) return cp;
    }
    return Status::not_found("checkpoint " + checkpoint_id + " not found");
  }

  Result<Checkpoint> latest_checkpoint(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    if (it->second.checkpoints.empty()) return Status::not_found("run " + run_id + " has no checkpoint");
    return it->second.checkpoints.back();
  }

  Result<std::vector<Checkpoint>> list_checkpoints(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    return it->second.checkpoints;
  }

  Status truncate_checkpoints(const std::string& run_id, int64_t version) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    auto& cps = it->second.checkpoints;
    for (const Checkpoint& cp : cps) {
      if (cp.version > version) checkpoint_run_.erase(cp.id);
    }
    cps.erase(std::remove_if(cps.begin(), cps.end(), [version](const Checkpoint& cp) { return cp.version > version; }),
              cps.end());
    it->second.pending_writes.clear();
    return Status();
  }

  Status put_pending_write(const PendingWrite& write) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(write.run_id);
    if (it == runs_.end()) return Status::not_found("run " + write.run_id + " not found");
    it->second.pending_writes.push_back(write);
    return Status();
  }

  Result<std::vector<PendingWrite>> list_pending_writes(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    return it->second.pending_writes;
  }

  Status put_step(const StepRecord& step) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(step.run_id);
    if (it == runs_.end()) return Status::not_found("run " + step.run_id + " not found");
    auto [pos, inserted] = it->second.steps.emplace(step.id, step);
    if (inserted) {
      it->second.step_order.push_back(&pos->first);
      step_run_[pos->first] = &it->first;
    } else {
      pos->second = step;
    }
    return Status();
  }

  Result<StepRecord> get_step(const std::string& step_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto owner = step_run_.find(step_id);
    if (owner == step_run_.end()) return Status::not_found("step " + step_id + " not found");
    return runs_.at(*owner->second).steps.at(step_id);
  }

  Result<std::vector<StepRecord>> list_steps(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    std::vector<StepRecord> out;
    out.reserve(it->second.step_order.size());
    for (const std::string* id : it->second.step_order) out.push_back(it->second.steps.at(*id));
    return out;
  }

  Result<int64_t> append_event(EventRecord event) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(event.run_id);
    if (it == runs_.end()) return Status::not_found("run " + event.run_id + " not found");
    event.seq = static_cast<int64_t>(it->second.events.size()) + 1;
    keep_event(it->second, event);
    return event.seq;
  }

  // One lock for the whole batch; its records are moved in (the engine only
  // reads the events back, for their seqs).
  bool accepts_earlier_checkpoint() const override { return true; }
  bool writes_without_waiting() const override { return true; }

  Status write_batch(StoreBatch& batch) override {
    if (batch.earlier_checkpoint && !batch.checkpoint) return internal::earlier_checkpoint_alone();
    const std::string* run_id = internal::single_run_of(batch);  // points into the batch
    if (run_id == nullptr) return Store::write_batch(batch);
    std::lock_guard<std::mutex> lock(mu_);
    if (batch.create) {
      // run_id may point into the new run's record: then it is copied, not moved.
      const bool names_run = run_id == &batch.create->run.id;
      ORCH_RETURN_IF_ERROR(create_locked(names_run ? RunRecord(batch.create->run) : std::move(batch.create->run)));
      const std::string& created_id = *run_id;  // the new run's id (single_run_of), wherever it points
      if (!batch.create->owner.empty()) {  // claimed as it is created: epoch 1 (Store::claim_run_lease)
        RunData& created = runs_[created_id];
        created.lease_owner = batch.create->owner;
        created.lease_epoch = 1;
        created.lease_expires_ms = lease_expiry(wall_ms(), batch.create->lease_ms);
      }
    }
    auto it = runs_.find(*run_id);
    if (it == runs_.end()) return Status::not_found("run " + *run_id + " not found");
    RunData& data = it->second;
    if (batch.lease_epoch > 0) ORCH_RETURN_IF_ERROR(fence(*run_id, data, batch.lease_owner, batch.lease_epoch));
    for (StepRecord& step : batch.steps) {
      // The key is built before the record is moved from (and the record is
      // left alone when its id is there already).
      auto [pos, inserted] = data.steps.try_emplace(step.id, std::move(step));
      if (inserted) {
        data.step_order.push_back(&pos->first);
        step_run_[pos->first] = &it->first;
      } else {
        pos->second = std::move(step);
      }
    }
    // A checkpoint drops the run's pending writes: with one in the batch,
    // the batch's own are not kept at all (as the SQL stores do).
    if (batch.checkpoint) {
      data.pending_writes.clear();
    } else {
      for (PendingWrite& write : batch.pending_writes) data.pending_writes.push_back(std::move(write));
    }
    if (batch.earlier_checkpoint) {
      checkpoint_run_[batch.earlier_checkpoint->id] = &it->first;
      data.checkpoints.push_back(std::move(*batch.earlier_checkpoint));
    }
    if (batch.checkpoint) {
      checkpoint_run_[batch.checkpoint->id] = &it->first;
      data.checkpoints.push_back(std::move(*batch.checkpoint));
    }
    if (batch.run && batch.checkpoint) {
      // A checkpoint's record: its progress (the rest is as created).
      RunRecord& to = data.record;
      const RunRecord& from = *batch.run;
      to.status = from.status;
      to.state = from.state;
      to.error = from.error;
      to.created_at_ms = from.created_at_ms;
      to.updated_at_ms = from.updated_at_ms;
      to.started_at_ms = from.started_at_ms;
      to.ended_at_ms = from.ended_at_ms;
      to.input_tokens = from.input_tokens;
      to.output_tokens = from.output_tokens;
      to.checkpoint_count = from.checkpoint_count;
      to.recoveries = from.recoveries;
    } else if (batch.run) {
      data.record = *batch.run;  // lent: left as it was
    }
    for (EventRecord& event : batch.events) {
      event.seq = static_cast<int64_t>(data.events.size()) + 1;
      keep_event(data, event);
    }
    return Status();
  }

  Result<std::vector<EventRecord>> list_events(const std::string& run_id, int64_t after_seq,
                                               size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return Status::not_found("run " + run_id + " not found");
    const auto& events = it->second.events;
    std::vector<EventRecord> out;
    size_t start = after_seq < 0 ? 0 : static_cast<size_t>(after_seq);
    for (size_t i = start; i < events.size() && out.size() < limit; ++i) {
      EventRecord& ev = out.emplace_back();
      ev.run_id = run_id;
      ev.seq = static_cast<int64_t>(i) + 1;
      ev.kind = *events[i].kind;
      ev.data = events[i].data;
      ev.created_at_ms = events[i].created_at_ms;
    }
    return out;
  }

  Status put_workflow(const WorkflowRecord& workflow, bool create_only) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workflows_.find(workflow.id);
    if (it != workflows_.end() && create_only) {
      return Status::already_exists("workflow " + workflow.id + " already exists");
    }
    if (it == workflows_.end()) workflow_order_.push_back(workflow.id);
    workflows_[workflow.id] = workflow;
    return Status();
  }

  Result<WorkflowRecord> get_workflow(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workflows_.find(id);
    if (it == workflows_.end()) return Status::not_found("workflow " + id + " not found");
    return it->second;
  }

  Result<std::vector<WorkflowRecord>> list_workflows() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<WorkflowRecord> out;
    for (const std::string& id : workflow_order_) out.push_back(workflows_.at(id));
    return out;
  }

  Status delete_workflow(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (workflows_.erase(id) == 0) return Status::not_found("workflow " + id + " not found");
    workflow_order_.erase(std::remove(workflow_order_.begin(), workflow_order_.end(), id), workflow_order_.end());
    return Status();
  }

  Status put_host_record(const std::string& collection, const std::string& id, const Value& record) override {
    std::lock_guard<std::mutex> lock(mu_);
    HostCollection& c = host_records_[collection];
    if (!c.records.count(id)) c.order.push_back(id);
    c.records[id] = record;
    return Status();
  }

  Status delete_host_record(const std::string& collection, const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = host_records_.find(collection);
    if (it == host_records_.end() || it->second.records.erase(id) == 0) {
      return Status::not_found(collection + " record " + id + " not found");
    }
    auto& order = it->second.order;
    order.erase(std::remove(order.begin(), order.end(), id), order.end());
    return Status();
  }

  Result<std::vector<Value>> list_host_records(const std::string& collection) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Value> out;
    auto it = host_records_.find(collection);
    if (it == host_records_.end()) return out;
    for (const std::string& id : it->second.order) out.push_back(it->second.records.at(id));
    return out;
  }

 private:
  // create_run with mu_ held.
  Status create_locked(RunRecord run) {
    if (runs_.count(run.id)) return Status::already_exists("run " + run.id + " already exists");
    if (!run.idempotency_key.empty()) {
      auto it = idempotency_.find(run.idempotency_key);
      if (it != idempotency_.end()) return Status::already_exists(it->second);
      idempotency_[run.idempotency_key] = run.id;
    }
    order_.push_back(run.id);
    if (spare_runs_.empty()) {
      std::string id = run.id;
      RunData& data = runs_[std::move(id)];
      data.record = std::move(run);
      // A short run's events and checkpoints fit without regrowing.
      data.events.reserve(64);
      data.checkpoints.reserve(8);
      data.step_order.reserve(8);
      data.pending_writes.reserve(8);
      return Status();
    }
    // A deleted run's map node and storage (see keep_spare): no allocation
    // for the node, its vectors or its steps' buckets.
    RunsNode node = std::move(spare_runs_.back());
    spare_runs_.pop_back();
    node.key() = run.id;
    node.mapped().record = std::move(run);
    runs_.insert(std::move(node));
    return Status();
  }

  // An event as kept: its run is the one holding it, its seq its position,
  // and its kind one of the few the store has seen (interned).
  struct StoredEvent {
    // Built in place in the run's list (a temporary moved in cost a move
    // and a destruction per event).
    StoredEvent(const std::string* kind_in, const Value& data_in, int64_t created_at)
        : kind(kind_in), data(data_in), created_at_ms(created_at) {}
    const std::string* kind;
    Value data;
    int64_t created_at_ms;
  };

  struct RunData {
    RunRecord record;
    std::vector<Checkpoint> checkpoints;
    std::vector<PendingWrite> pending_writes;
    std::unordered_map<std::string, StepRecord> steps;
    std::vector<const std::string*> step_order;  // keys of `steps`, in first-write order
    std::vector<StoredEvent> events;  // events[i] has seq i + 1
    std::string lease_owner;          // '' when nobody holds the run
    int64_t lease_expires_ms = 0;
    int64_t lease_epoch = 0;          // see Store::claim_run_lease
  };

  using RunsNode = std::unordered_map<std::string, RunData>::node_type;
  // A deleted run's map node, emptied but keeping its vectors' capacity, for
  // the next run created: a host that deletes each short run once read (a
  // benchmark, a test suite) then creates runs without allocating their
  // containers again.
  static constexpr size_t kSpareRuns = 4;
  void keep_spare(RunsNode node) {
    if (spare_runs_.size() >= kSpareRuns) return;
    RunData& d = node.mapped();
    d.record = RunRecord();
    d.checkpoints.clear();
    d.pending_writes.clear();
    d.steps.clear();
    d.step_order.clear();
    d.events.clear();
    d.lease_owner.clear();
    d.lease_expires_ms = 0;
    d.lease_epoch = 0;
    spare_runs_.push_back(std::move(node));
  }

  // REQUIRES: mu_ held.
  static Status fence(const std::string& run_id, const RunData& d, const std::string& owner, int64_t epoch) {
    if (d.lease_owner == owner && d.lease_epoch == epoch) return Status();
    return lease_lost_status(run_id, "is held by '" + d.lease_owner + "' at epoch " + std::to_string(d.lease_epoch) +
                                         ", not by '" + owner + "' at epoch " + std::to_string(epoch));
  }

  // REQUIRES: mu_ held.
  void keep_event(RunData& data, const EventRecord& event) {
    data.events.emplace_back(intern_kind(event.kind), event.data, event.created_at_ms);
  }

  // REQUIRES: mu_ held. The interned copy of `kind`. A run's events take a
  // handful of kinds, over and over: a slot per (length, first letter) finds
  // them with one comparison instead of hashing each.
  const std::string* intern_kind(const std::string& kind) {
    const size_t slot = kind.empty() ? 0 : (kind.size() * 31 + static_cast<unsigned char>(kind.front())) % kKindSlots;
    const std::string* cached = kind_slots_[slot];
    if (cached != nullptr && *cached == kind) return cached;
    const std::string* interned = &*kinds_.insert(kind).first;
    kind_slots_[slot] = interned;
    return interned;
  }

  std::mutex mu_;
  std::unordered_set<std::string> kinds_;  // event kinds, for StoredEvent (set nodes stay put)
  static constexpr size_t kKindSlots = 64;
  const std::string* kind_slots_[kKindSlots] = {};  // see intern_kind
  std::unordered_map<std::string, RunData> runs_;
  std::vector<RunsNode> spare_runs_;  // see keep_spare
  std::vector<std::string> order_;
  std::unordered_map<std::string, std::string> idempotency_;
  // Id -> the key of its run in runs_ (map keys stay put until erased).
  std::unordered_map<std::string, const std::string*> checkpoint_run_;
  // Keyed by views of the run's `steps` keys (which stay put until erased).
  std::unordered_map<std::string_view, const std::string*> step_run_;
  std::unordered_map<std::string, WorkflowRecord> workflows_;
  std::vector<std::string> workflow_order_;
  struct HostCollection {
    std::unordered_map<std::string, Value> records;
    std::vector<std::string> order;  // ids, first put first
  };
  std::unordered_map<std::string, HostCollection> host_records_;
  std::unordered_map<std::string, std::pair<std::string, int64_t>> singletons_;  // name -> owner, expiry
};

}  // namespace

std::shared_ptr<Store> new_memory_store() { return std::make_shared<MemoryStore>(); }

std::string_view run_status_name(RunStatus status) {
  switch (status) {
    case RunStatus::kPending: return "pending";
    case RunStatus::kRunning: return "running";
    case RunStatus::kInterrupted: return "interrupted";
    case RunStatus::kCompleted: return "completed";
    case RunStatus::kFailed: return "failed";
    case RunStatus::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::optional<RunStatus> run_status_from_name(std::string_view name) {
  for (RunStatus s : {RunStatus::kPending, RunStatus::kRunning, RunStatus::kInterrupted,
                      RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kCancelled}) {
    if (run_status_name(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view step_status_name(StepStatus status) {
  switch (status) {
    case StepStatus::kPending: return "pending";
    case StepStatus::kReady: return "ready";
    case StepStatus::kRunning: return "running";
    case StepStatus::kCompleted: return "completed";
    case StepStatus::kFailed: return "failed";
    case StepStatus::kSkipped: return "skipped";
    case StepStatus::kInterrupted: return "interrupted";
  }
  return "unknown";
}

}  // namespace orch
