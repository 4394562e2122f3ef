// SPDX-License-Identifier: MIT
// Store::write_batch's default: one call per item, in the batch's order.
#include "orch/store.h"

namespace orch {

Status Store::write_batch(StoreBatch& batch) {
  for (const StepRecord& step : batch.steps) ORCH_RETURN_IF_ERROR(put_step(step));
  for (const PendingWrite& write : batch.pending_writes) ORCH_RETURN_IF_ERROR(put_pending_write(write));
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

}  // namespace orch
