// SPDX-License-Identifier: MIT
//
// NodeOutcome: what one node execution produced, before its superstep applies
// it. Serializable, so a finished node's result is recorded as a pending write
// and a crash never runs it again.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "orch/value.h"

namespace orch::internal {

struct NodeOutcome {
  enum class Kind { kOk, kFailed, kInterrupt };
  Kind kind = Kind::kOk;
  std::vector<Value> updates;           // applied in order through the reducers
  std::optional<std::string> route;     // route nodes
  bool has_goto = false;
  std::vector<std::string> goto_nodes;
  std::string error;
  Value usage;                          // {"input_tokens","output_tokens"} or null
  Value custom;                         // ui/stream messages for the custom stream, or null

  // A node that failed with `error`.
  static NodeOutcome failure(std::string error) {
    NodeOutcome o;
    o.kind = Kind::kFailed;
    o.error = std::move(error);
    return o;
  }
  // A node that succeeded with one update.
  static NodeOutcome with_update(Value update) {
    NodeOutcome o;
    o.updates.push_back(std::move(update));
    return o;
  }

  Value to_value() const;
  static NodeOutcome from_value(const Value& v);
};

}  // namespace orch::internal
