// SPDX-License-Identifier: MIT
// Applying updates, initial state and ephemeral keys (see include/orch/state.h).
#include "orch/state.h"

#include <vector>

#include "engine/reducers.h"

namespace orch {

bool is_overwrite(const Value& v) {
  const Value* flag = v.find("__overwrite");
  return flag != nullptr && flag->is_bool() && flag->as_bool();
}

Status apply_updates(Value* state, const Value& updates, const Workflow* workflow) {
  if (!updates.is_object()) {
    return Status::invalid_argument("state updates must be an object, not " +
                                    std::string(type_name(updates.type())));
  }
  if (updates.as_object().empty()) return Status();
  // Check every key first, so a failing key leaves the state untouched; then
  // apply in place, where nothing can fail. A list the state alone holds grows
  // without being copied.
  const Object* current = state->is_object() ? &state->as_object() : nullptr;
  auto reducer_of = [workflow](const std::string& key, const Value& update) {
    if (is_overwrite(update)) return ReducerKind::kLastValue;
    // A worker's ui_messages gather here whatever the schema says (NullBoiler
    // keeps this key under a fixed internal schema).
    if (key == "__ui_messages") return ReducerKind::kAddMessages;
    const StateKey* decl = workflow ? workflow->find_state_key(key) : nullptr;
    return decl ? decl->reducer : ReducerKind::kLastValue;
  };
  // Each key's reducer is looked up once (kept on the stack for the usual
  // few keys).
  const Object& changes = updates.as_object();
  ReducerKind few[8];
  std::vector<ReducerKind> many;
  ReducerKind* kinds = few;
  if (changes.size() > 8) {
    many.resize(changes.size());
    kinds = many.data();
  }
  for (size_t i = 0; i < changes.size(); ++i) {
    const auto& [key, update] = changes.at_index(i);
    kinds[i] = reducer_of(key, update);
    Status st = internal::check_reducer(kinds[i], current ? current->find(key) : nullptr, update);
    if (!st.ok()) return Status::invalid_argument("state key '" + key + "': " + st.message());
  }
  if (!state->is_object()) *state = Value::object();
  Object& members = state->mutable_object();
  for (size_t i = 0; i < changes.size(); ++i) {
    const auto& [key, update] = changes.at_index(i);
    const Value& value = is_overwrite(update) ? update["value"] : update;
    internal::reduce_in_place(kinds[i], &members[key], value);
  }
  return Status();
}

Value initial_state(const Value& input, const Workflow& workflow) {
  if (workflow.state_schema.empty()) return input.is_object() ? input : Value::object();
  Value state = Value::object();
  Object& members = state.mutable_object();
  members.reserve(workflow.state_schema.size());
  for (const StateKey& key : workflow.state_schema) {
    if (const Value* given = input.find(key.name)) {
      members.set(key.name, *given);
    } else if (key.type == "string") {
      members.set(key.name, "");
    } else if (key.type == "array") {
      members.set(key.name, Value::array());
    } else if (key.type == "number" || key.type == "integer") {
      members.set(key.name, 0);
    } else if (key.type == "boolean") {
      members.set(key.name, false);
    } else if (key.type == "object") {
      members.set(key.name, Value::object());
    } else {
      members.set(key.name, Value());
    }
  }
  return state;
}

size_t clear_ephemeral_keys(Value* state, const Workflow& workflow) {
  if (!state->is_object()) return 0;
  size_t removed = 0;
  for (const StateKey& key : workflow.state_schema) {
    if (key.ephemeral && state->find(key.name) != nullptr) {
      state->mutable_object().erase(key.name);
      ++removed;
    }
  }
  return removed;
}

}  // namespace orch
