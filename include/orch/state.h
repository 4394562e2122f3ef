// SPDX-License-Identifier: MIT
//
// State: the rules that turn updates into a new workflow state.
//
// A run's state is one JSON object. Nodes return partial updates (objects);
// each top-level key of an update is merged into the state by that key's
// reducer (declared in `state_schema`; undeclared keys use last_value). An
// update value of the form {"__overwrite": true, "value": X} stores X as is.
//
// Reducers (typed; a mismatch is an InvalidArgument naming the key, never a
// crash or a silent wrong value):
//   last_value    the new value replaces the old.
//   append        old absent/null starts a list; an array update is spread
//                 (its elements appended), any other value appended as one
//                 element. Old holding a non-array is an error.
//   merge         deep merge of objects: keys of the update win; where both
//                 sides hold objects they merge recursively; arrays and scalars
//                 are replaced. Old absent/null takes the update. The update
//                 must be an object, and old must be an object or absent/null.
//   add           numeric sum; old absent/null counts as 0. Two integers give an
//                 exact integer (int64 overflow is an error); any double gives a
//                 double. Non-numbers are errors.
//   min, max      the smaller/larger number, keeping the winner's own type (an
//                 int stays an int); old absent/null takes the update.
//   add_messages  a message list keyed by "id": the update is one message
//                 (object) or an array of them. A message whose string id is in
//                 the list replaces the first such message in place; with
//                 "remove": true it deletes every message with that id; a new id
//                 is appended; a message without a string id gets a fresh unique
//                 id ("msg_<uuid>") and is appended.
//
// Cost: applying an update copies the top-level object once (its members stay
// shared) and then touches only the keys it changes.
//
// Thread-safety: free functions over values; no shared state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"
#include "orch/workflow.h"

namespace orch {

// Combines `old_value` (nullptr when the key is absent) with `update`.
ORCH_EXPORT Result<Value> apply_reducer(ReducerKind reducer, const Value* old_value,
                                        const Value& update);

// Applies an update object to `state` key by key through `workflow`'s reducers
// (last_value for undeclared keys; `workflow` may be null). A non-object update
// is InvalidArgument. On error `state` is left unchanged.
ORCH_EXPORT Status apply_updates(Value* state, const Value& updates, const Workflow* workflow);

// True when `v` is an {"__overwrite": true, ...} wrapper.
ORCH_EXPORT bool is_overwrite(const Value& v);

// The initial state of a run: each declared key, in schema order, from `input`
// when present there, else the default of its type ("" string, [] array,
// 0 number, false boolean, {} object, null otherwise). With no schema declared,
// the state is the input object itself (or {} when the input is not an object).
ORCH_EXPORT Value initial_state(const Value& input, const Workflow& workflow);

// Removes the workflow's ephemeral keys from `state`; returns how many it removed.
ORCH_EXPORT size_t clear_ephemeral_keys(Value* state, const Workflow& workflow);

// What a worker (or in-process node) replied, as the engine reads it.
struct ReplyEffects {
  Value updates = Value::object();        // state updates to apply
  bool has_state_updates = false;         // the reply carried an explicit state_updates
  bool has_goto = false;
  std::vector<std::string> goto_nodes;    // when has_goto
  bool done = false;                      // agent: end the turn loop
  Value usage;                            // {"input_tokens","output_tokens"} or null
  Value rate_limit;                       // {"remaining","limit","reset_ms"} or null
  Value ui_messages;                      // array or null
  Value stream_messages;                  // array or null
};

// Turns a worker reply into state updates and control effects (SPEC §6):
// control fields (`goto`, `state_updates`, `usage`, `rate_limit`, `ui_messages`,
// `stream_messages`, `done`) are read from the top level of `envelope` first,
// then from inside `output` when it is a JSON object. Updates: `state_updates`
// when present; else `output_key` (the output parsed as JSON when it parses, else
// the text) and `output_mapping` (paths into the parsed output; mapping wins on
// the same key); else {"output": output}.
ORCH_EXPORT ReplyEffects interpret_reply(std::string_view output, const Value& envelope,
                                         const TaskConfig& config);

}  // namespace orch
