// SPDX-License-Identifier: MIT
//
// Deltas between two versions of a Value, so a store can keep only what changed
// from one checkpoint to the next.
//
// A delta is a JSON array of operations, applied in order:
//
//   ["s", [k1, ..., kn], v]      set: the member kn of the object at k1..kn-1
//                                becomes v (a new key goes to the end)
//   ["r", [k1, ..., kn]]         remove: the member kn is dropped
//   ["a", [k1, ..., kn], [items]] append: the items go to the end of the array
//                                at k1..kn
//
// A path is a list of object keys from the root; the empty path is the root
// itself (only "s" and "a" accept it). Arrays are never indexed into: an array
// that only grew (the old one is a prefix of the new one) gives "a" with just
// the new items, which keeps a list that grows by one item per step linear in
// storage; any other array change replaces the whole array.
//
// Applying make_delta(a, b) to a gives b exactly: same types (an int stays an
// int, 1.0 stays a double) and the same key order. Where setting and removing
// keys cannot reproduce b's key order, the object is replaced whole.
#pragma once

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch {

// Returns the delta that turns `before` into `after` (an empty array when they
// are the same). Unchanged parts are skipped cheaply when they share storage.
ORCH_EXPORT Value make_value_delta(const Value& before, const Value& after);

// Applies `delta` to `*target`. InvalidArgument when the delta is malformed or
// does not fit the target (a path through a missing key or a non-object, an
// append to a non-array); *target is then partly updated and must be dropped.
ORCH_EXPORT Status apply_value_delta(const Value& delta, Value* target);

// Exact equality: types must match (1 is not 1.0), objects must have the same
// keys in the same order. Value's operator== is looser on both counts.
bool identical_values(const Value& a, const Value& b);

}  // namespace orch
