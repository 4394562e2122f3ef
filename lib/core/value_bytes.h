// SPDX-License-Identifier: MIT
//
// value_bytes: about how many bytes a Value takes as compact JSON (escapes
// not counted), in one pass and without building the text. The engine bounds
// a run's state with it (EngineOptions::max_state_bytes).
//
// Thread-safety: a pure function.
#pragma once

#include <cstddef>

#include "orch/value.h"

namespace orch::internal {

size_t value_bytes(const Value& v);

}  // namespace orch::internal
