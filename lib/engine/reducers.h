// SPDX-License-Identifier: MIT
//
// The reducers split in two (not installed): a check that finds every error
// without changing anything, and an in-place application that cannot fail
// once the check passed. apply_updates checks all keys first, then applies
// them to the state it owns, so a list that nothing else shares grows in
// place instead of being copied for every update.
#pragma once

#include "orch/state.h"

namespace orch::internal {

// Would `reducer` accept `update` on top of `current` (nullptr: key absent)?
Status check_reducer(ReducerKind reducer, const Value* current, const Value& update);

// Combines `*slot` (null when the key was absent) with `update` in place.
// REQUIRES: check_reducer passed for the same arguments.
void reduce_in_place(ReducerKind reducer, Value* slot, const Value& update);

}  // namespace orch::internal
