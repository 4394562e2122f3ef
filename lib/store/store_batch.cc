// SPDX-License-Identifier: MIT
// Store::write_batch's default (one call per item, in the batch's order) and
// what stores that write batches their own way share.
#include "store/store_batch.h"

#include <algorithm>

namespace orch {

namespace internal {

const std::string* single_run_of(const StoreBatch& batch) {
  if ((batch.checkpoint || batch.earlier_checkpoint) && !batch.run) return nullptr;
  const std::string* run_id = nullptr;
  if (batch.run) run_id = &batch.run->id;
  if (run_id == nullptr && batch.create) run_id = &batch.create->run.id;
  if ((run_id == nullptr || run_id->empty()) && !batch.events.empty()) run_id = &batch.events.front().run_id;
  if ((run_id == nullptr || run_id->empty()) && !batch.steps.empty()) run_id = &batch.steps.front().run_id;
  if ((run_id == nullptr || run_id->empty()) && !batch.pending_writes.empty()) run_id = &batch.pending_writes.front().run_id;
  if (run_id == nullptr || run_id->empty()) return nullptr;
  auto same = [run_id](const std::string& id) { return id == *run_id; };
  bool single = std::all_of(batch.steps.begin(), batch.steps.end(), [&](const StepRecord& s) { return same(s.run_id); }) &&
                std::all_of(batch.pending_writes.begin(), batch.pending_writes.end(),
                            [&](const PendingWrite& w) { return same(w.run_id); }) &&
                std::all_of(batch.events.begin(), batch.events.end(), [&](const EventRecord& e) { return same(e.run_id); }) &&
                (!batch.checkpoint || batch.checkpoint->run_id == *run_id) &&
                (!batch.earlier_checkpoint || batch.earlier_checkpoint->run_id == *run_id) &&
                (!batch.create || batch.create->run.id == *run_id);
  return single ? run_id : nullptr;
}

Status earlier_checkpoint_alone() {
  return Status::invalid_argument("write_batch: an earlier_checkpoint without a checkpoint to follow it");
}

std::optional<Value> without_checkpoint_state(const Value& data, const Value& checkpoint_state) {
  if (!data.is_object() || data.size() == 0) return std::nullopt;
  const Object& fields = data.as_object();
  const auto& last = *(fields.end() - 1);
  if (last.first != "state" || !last.second.shares_storage_with(checkpoint_state)) return std::nullopt;
  Value rest = Value::object();
  for (auto it = fields.begin(); it + 1 != fields.end(); ++it) rest.set(it->first, it->second);
  return rest;
}

}  // namespace internal

Status Store::create_claimed_run(const RunRecord& run, const std::string& owner, int64_t lease_ms) {
  ORCH_RETURN_IF_ERROR(create_run(run));
  // A run nobody else knows of yet: the claim cannot be refused by another
  // owner, and a store that fails it still has a usable run.
  (void)claim_run(run.id, owner, lease_ms);
  return Status();
}

bool lease_lost(const Status& status) {
  return status.code() == StatusCode::kAborted && status.message().rfind("lease lost", 0) == 0;
}

Status lease_lost_status(const std::string& run_id, const std::string& detail) {
  return Status::aborted("lease lost: run " + run_id + " " + detail);
}

Result<int64_t> Store::claim_run_lease(const std::string& run_id, const std::string& owner, int64_t lease_ms) {
  ORCH_RETURN_IF_ERROR(claim_run(run_id, owner, lease_ms));
  return int64_t{0};  // this store does not fence
}

Status Store::check_lease(const std::string&, const std::string&, int64_t) { return Status(); }

Result<int64_t> Store::renew_leases(const std::string&, int64_t) {
  return Status::unimplemented("this store does not renew leases");
}

Result<std::vector<std::string>> Store::list_expired_leases(size_t) {
  return Status::unimplemented("this store does not list expired leases");
}

Result<bool> Store::claim_singleton(const std::string&, const std::string&, int64_t) { return true; }

Status Store::write_batch(StoreBatch& batch) {
  if (batch.earlier_checkpoint && !batch.checkpoint) return internal::earlier_checkpoint_alone();
  if (batch.create) ORCH_RETURN_IF_ERROR(create_claimed_run(batch.create->run, batch.create->owner, batch.create->lease_ms));
  if (batch.lease_epoch > 0) {
    if (const std::string* run_id = internal::single_run_of(batch)) {
      ORCH_RETURN_IF_ERROR(check_lease(*run_id, batch.lease_owner, batch.lease_epoch));
    }
  }
  for (const StepRecord& step : batch.steps) ORCH_RETURN_IF_ERROR(put_step(step));
  for (const PendingWrite& write : batch.pending_writes) ORCH_RETURN_IF_ERROR(put_pending_write(write));
  if (batch.earlier_checkpoint && batch.run) {
    ORCH_RETURN_IF_ERROR(commit_checkpoint(*batch.earlier_checkpoint, *batch.run, batch.sync_to_disk));
  }
  if (batch.checkpoint && batch.run) {
    ORCH_RETURN_IF_ERROR(commit_checkpoint(*batch.checkpoint, *batch.run, batch.sync_to_disk));
  } else if (batch.run) {
    ORCH_RETURN_IF_ERROR(update_run(*batch.run));
  }
  for (EventRecord& event : batch.events) {
    ORCH_ASSIGN_OR_RETURN(event.seq, append_event(event));
  }
  return Status();
}

void Store::write_batch_async(StoreBatch batch, BatchDone done) {
  Status status = write_batch(batch);
  done(std::move(status), batch);
}

}  // namespace orch
