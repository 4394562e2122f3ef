// SPDX-License-Identifier: MIT
//
// Identifiers: runs, steps, checkpoints and messages are named by random
// UUIDs (version 4), as text: "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
//
// Thread-safety: both functions may be called from any thread.
#pragma once

#include <string>
#include <string_view>

#include "orch/export.h"

namespace orch {

// A new random UUID v4 in lower-case canonical text form.
ORCH_EXPORT std::string new_uuid();

// True when `text` is a canonical UUID (any version, either case).
ORCH_EXPORT bool is_uuid(std::string_view text);

}  // namespace orch
