// SPDX-License-Identifier: MIT
//
// Helpers for stores that write a StoreBatch their own way (not installed).
#pragma once

#include <string>

#include "orch/store.h"

namespace orch::internal {

// The run id every item of `batch` carries (pointing into the batch), or
// nullptr when they differ (or the batch has a checkpoint without a run
// record): such a batch takes Store::write_batch's one-call-per-item path.
ORCH_EXPORT const std::string* single_run_of(const StoreBatch& batch);

}  // namespace orch::internal
