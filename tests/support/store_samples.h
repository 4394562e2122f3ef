// SPDX-License-Identifier: MIT
//
// Sample records for the database stores' own tests (sqlite_store_test,
// postgres_store_test): a running run, a checkpoint of it, a state that
// grows by one list item per step, and an exact comparison of values.
#pragma once

#include <cstdint>
#include <string>

#include "orch/store.h"
#include "orch/value.h"

namespace orch::testing {

// A running run with a small input.
RunRecord sample_running_run(const std::string& id);

// Checkpoint "<run>-cp<version>" of `run_id` holding `state`, its parent the
// previous version's.
Checkpoint sample_checkpoint_of(const std::string& run_id, int64_t version, Value state);

// `previous` with one more item in "items" and "step" set to `step`.
Value grown_state(const Value& previous, int step);

}  // namespace orch::testing
