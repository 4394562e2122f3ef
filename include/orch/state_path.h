// SPDX-License-Identifier: MIT
//
// State paths: how route inputs, send `items_key`, subgraph `input_mapping`,
// `output_mapping`, `store_updates` values and every template expression name
// a value inside a Value (usually the workflow state).
//
// Syntax (NullBoiler-compatible):
//   * An optional leading "state." is stripped once (StatePrefix::kStrip); with
//     StatePrefix::kKeep the path is used as written. "state.x" and "x" are the
//     same path under kStrip, and "state.state.x" names the key "state".
//   * The rest is split on '.'. Each segment is an object key; when the current
//     value is an array, a segment of decimal digits is an index ("a.b.0.c").
//   * A segment may end in one bracket index: "key[N]" (N non-negative decimal)
//     or "key[-1]" (the last element). The key is applied first, then the index,
//     which requires an array. A segment that is only "[N]" indexes the current
//     value. Only one index per segment; no whitespace or other negative indices.
//   * Keys containing '.' or '[' cannot be reached. Empty segments name the key
//     "". The empty path names the root value itself.
//   * A failed step (missing key, index out of range, wrong type) means "not
//     found" (nullptr). A malformed bracket means the path is invalid: compiling
//     fails with InvalidArgument, and the uncompiled lookup returns nullptr.
//
// Ownership: lookups return pointers into the Value passed in; they stay valid
// while that Value is alive and unmodified. A StatePath owns its segments.
//
// Thread-safety: all functions are pure. A StatePath is immutable after
// compilation and may be used from any number of threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch {

// Whether a leading "state." is stripped from a path before it is split.
enum class StatePrefix { kStrip, kKeep };

// Returns `path` without one leading "state." (unchanged when it has none).
ORCH_EXPORT std::string_view strip_state_prefix(std::string_view path);

// A path parsed once, for lookups on hot paths that must not re-parse.
class ORCH_EXPORT StatePath {
 public:
  // One '.'-separated segment: an optional key followed by an optional index.
  struct Segment {
    enum class Index : uint8_t {
      kNone,  // no bracket
      kAt,    // [N]: element `at`
      kLast,  // [-1]: the last element
    };

    std::string key;
    // False only for a bare "[N]" segment, which indexes the current value.
    bool has_key = true;
    // True when `key` is all decimal digits; `key_index` is then its value, used
    // when the current value is an array.
    bool key_is_index = false;
    size_t key_index = 0;
    Index index = Index::kNone;
    size_t at = 0;
  };

  // The empty path (names the root).
  StatePath() = default;

  // Parses `path`. Fails with InvalidArgument naming the path and the bad
  // segment when a bracket index is malformed.
  static Result<StatePath> compile(std::string_view path, StatePrefix prefix = StatePrefix::kStrip);

  // The value at this path inside `root`, or nullptr when any step fails.
  const Value* find(const Value& root) const;

  const std::vector<Segment>& segments() const { return segments_; }
  bool empty() const { return segments_.empty(); }
  // The path as compiled, after prefix stripping.
  const std::string& text() const { return text_; }

 private:
  std::vector<Segment> segments_;
  std::string text_;
};

// Looks `path` up in `root` without compiling it (and without allocating).
// Returns nullptr when the path is not found or malformed.
ORCH_EXPORT const Value* find_state_path(const Value& root, std::string_view path,
                                         StatePrefix prefix = StatePrefix::kStrip);

// The string a route node compares against its `routes` keys:
//   bool          → "true" / "false"
//   integer       → decimal ("-12")
//   double        → shortest round-trip decimal without exponent; integral
//                   values without a fraction (2.0 → "2", 0.5 → "0.5",
//                   1e20 → "100000000000000000000", -0.0 → "0"); NaN and
//                   infinities → "null"
//   string        → its contents, raw
//   null/array/object → compact JSON ("null", "[1,2]", "{\"a\":1}")
ORCH_EXPORT std::string route_value_string(const Value& value);

}  // namespace orch
