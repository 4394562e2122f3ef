// SPDX-License-Identifier: MIT
// The seven reducers. Semantics are documented in include/orch/state.h.
#include <algorithm>
#include <string>

#include "orch/id.h"
#include "orch/state.h"
#include "engine/reducers.h"

namespace orch {
namespace {

Status mismatch(std::string_view reducer, std::string_view what, const Value& v) {
  return Status::invalid_argument(std::string(reducer) + ": " + std::string(what) + " is " +
                                  std::string(type_name(v.type())));
}

bool absent_or_null(const Value* v) { return v == nullptr || v->is_null(); }

// Exact comparison of two numbers, also between an int64 and a double: long
// double holds every int64 exactly on x86-64.
long double as_long_double(const Value& v) {
  return v.is_int() ? static_cast<long double>(v.as_int()) : static_cast<long double>(v.as_double());
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int()) return a.as_int() < b.as_int();
  return as_long_double(a) < as_long_double(b);
}

// The current value must be absent, null or of the reducer's type.
Status check_current(std::string_view reducer, const Value* current, Value::Type wanted) {
  if (absent_or_null(current) || current->type() == wanted ||
      (wanted == Value::Type::kDouble && current->is_number())) {
    return Status();
  }
  return mismatch(reducer, "the current value", *current);
}

Status check_number_update(std::string_view reducer, const Value* current, const Value& update) {
  if (!update.is_number()) return mismatch(reducer, "the update", update);
  return check_current(reducer, current, Value::Type::kDouble);
}

Status check_add(const Value* current, const Value& update) {
  ORCH_RETURN_IF_ERROR(check_number_update("add", current, update));
  int64_t sum = 0;
  if (!absent_or_null(current) && current->is_int() && update.is_int() &&
      __builtin_add_overflow(current->as_int(), update.as_int(), &sum)) {
    return Status::invalid_argument("add: integer overflow (" + current->to_json() + " + " + update.to_json() +
                                    " does not fit in 64 bits)");
  }
  return Status();
}

Status check_add_messages(const Value* current, const Value& update) {
  if (!update.is_object() && !update.is_array()) return mismatch("add_messages", "the update", update);
  ORCH_RETURN_IF_ERROR(check_current("add_messages", current, Value::Type::kArray));
  if (update.is_array()) {
    const Array& messages = update.as_array();
    for (size_t i = 0; i < messages.size(); ++i) {
      if (!messages[i].is_object()) {
        return Status::invalid_argument("add_messages: message " + std::to_string(i) + " is " +
                                        std::string(type_name(messages[i].type())) + ", not an object");
      }
    }
  }
  return Status();
}

void append(Value* slot, const Value& update) {
  Array& items = slot->mutable_array();
  if (update.is_array()) {
    items.insert(items.end(), update.as_array().begin(), update.as_array().end());
  } else {
    items.push_back(update);
  }
}

void deep_merge(Value* dst, const Value& update) {
  Object& members = dst->mutable_object();
  for (const auto& [key, value] : update.as_object()) {
    Value* existing = members.find(key);
    if (existing != nullptr && existing->is_object() && value.is_object()) {
      deep_merge(existing, value);
    } else {
      members.set(key, value);
    }
  }
}

void add(Value* slot, const Value& update) {
  if (slot->is_null()) {
    *slot = update;
  } else if (slot->is_int() && update.is_int()) {
    *slot = Value(static_cast<long long>(slot->as_int() + update.as_int()));  // checked not to overflow
  } else {
    *slot = Value(slot->as_double() + update.as_double());
  }
}

void min_max(bool want_min, Value* slot, const Value& update) {
  if (slot->is_null() || (want_min ? less_than(update, *slot) : less_than(*slot, update))) *slot = update;
}

void add_message(Array& list, const Value& msg) {
  const Value* id = msg.find("id");
  if (id == nullptr || !id->is_string()) {
    Value fresh = msg;
    fresh.set("id", "msg_" + new_uuid());
    list.push_back(std::move(fresh));
    return;
  }
  const std::string& wanted = id->as_string();
  auto same_id = [&wanted](const Value& m) {
    const Value* mid = m.find("id");
    return mid != nullptr && mid->is_string() && mid->as_string() == wanted;
  };
  if (msg["remove"].get_bool(false)) {
    list.erase(std::remove_if(list.begin(), list.end(), same_id), list.end());
    return;
  }
  for (Value& existing : list) {
    if (same_id(existing)) {
      existing = msg;
      return;
    }
  }
  list.push_back(msg);
}

void add_messages(Value* slot, const Value& update) {
  Array& list = slot->mutable_array();
  if (update.is_object()) {
    add_message(list, update);
  } else {
    for (const Value& msg : update.as_array()) add_message(list, msg);
  }
}

}  // namespace

namespace internal {

Status check_reducer(ReducerKind reducer, const Value* current, const Value& update) {
  switch (reducer) {
    case ReducerKind::kLastValue: return Status();
    case ReducerKind::kAppend: return check_current("append", current, Value::Type::kArray);
    case ReducerKind::kMerge:
      if (!update.is_object()) return mismatch("merge", "the update", update);
      return check_current("merge", current, Value::Type::kObject);
    case ReducerKind::kAdd: return check_add(current, update);
    case ReducerKind::kMin: return check_number_update("min", current, update);
    case ReducerKind::kMax: return check_number_update("max", current, update);
    case ReducerKind::kAddMessages: return check_add_messages(current, update);
  }
  return Status::internal("unknown reducer");
}

void reduce_in_place(ReducerKind reducer, Value* slot, const Value& update) {
  switch (reducer) {
    case ReducerKind::kLastValue: *slot = update; return;
    case ReducerKind::kAppend: append(slot, update); return;
    case ReducerKind::kMerge: deep_merge(slot, update); return;
    case ReducerKind::kAdd: add(slot, update); return;
    case ReducerKind::kMin: min_max(true, slot, update); return;
    case ReducerKind::kMax: min_max(false, slot, update); return;
    case ReducerKind::kAddMessages: add_messages(slot, update); return;
  }
}

}  // namespace internal

Result<Value> apply_reducer(ReducerKind reducer, const Value* old_value, const Value& update) {
  ORCH_RETURN_IF_ERROR(internal::check_reducer(reducer, old_value, update));
  Value out = old_value != nullptr ? *old_value : Value();
  internal::reduce_in_place(reducer, &out, update);
  return out;
}

}  // namespace orch
