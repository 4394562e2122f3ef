// SPDX-License-Identifier: MIT
//
// What an id must be (SPEC §12): workflow, worker, run and step ids and
// idempotency keys are at most kMaxIdBytes long and hold no control
// characters (NUL included), whether they come in a path, a body or the
// config file: an id accepted in a body must also be one a path can name.
#pragma once

#include <string>

namespace orch::server {

constexpr size_t kMaxIdBytes = 256;

// Empty when `id` is acceptable, else why not ("<what> is 300 bytes long; ...").
std::string id_problem(const std::string& id, const std::string& what);

// Empty when `value` holds no control character (bytes below 0x20 and 0x7f),
// else why not: for text that goes into an outgoing header (a worker's token).
std::string control_character_problem(const std::string& value, const std::string& what);

}  // namespace orch::server
