// SPDX-License-Identifier: MIT
//
// Helpers for stores that write a StoreBatch their own way (not installed).
#pragma once

#include <optional>
#include <string>

#include "orch/export.h"
#include "orch/store.h"

namespace orch::internal {

// The run id every item of `batch` carries (pointing into the batch), or
// nullptr when they differ (or the batch has a checkpoint without a run
// record): such a batch takes Store::write_batch's one-call-per-item path.
ORCH_EXPORT const std::string* single_run_of(const StoreBatch& batch);

// The error for a batch whose earlier_checkpoint has no checkpoint after it.
ORCH_EXPORT Status earlier_checkpoint_alone();

// `data` without its "state" when that is its last key and holds the very
// state of the batch's checkpoint (the engine's "values" event): shared
// storage, so the check costs no comparison. A store keeps such an event
// without the state and names the checkpoint instead: storing the whole
// state twice per superstep (and a growing one at that) is what it saves.
ORCH_EXPORT std::optional<Value> without_checkpoint_state(const Value& data, const Value& checkpoint_state);

}  // namespace orch::internal
