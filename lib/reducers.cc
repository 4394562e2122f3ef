// SPDX-License-Identifier: MIT
// The seven reducers. Semantics are documented in include/orch/state.h.
#include <algorithm>
#include <string>

#include "orch/id.h"
#include "orch/state.h"

namespace orch {
namespace {

Status mismatch(std::string_view reducer, std::string_view what, const Value& v) {
  return Status::invalid_argument(std::string(reducer) + ": " + std::string(what) + " is " +
                                  std::string(type_name(v.type())));
}

bool absent_or_null(const Value* v) { return v == nullptr || v->is_null(); }

Result<Value> append(const Value* old_value, const Value& update) {
  Value out;
  if (absent_or_null(old_value)) {
    out = Value::array();
  } else if (old_value->is_array()) {
    out = *old_value;
  } else {
    return mismatch("append", "the current value", *old_value);
  }
  Array& items = out.mutable_array();
  if (update.is_array()) {
    items.insert(items.end(), update.as_array().begin(), update.as_array().end());
  } else {
    items.push_back(update);
  }
  return out;
}

Value deep_merge(const Value& base, const Value& update) {
  Value out = base;
  Object& dst = out.mutable_object();
  for (const auto& [key, value] : update.as_object()) {
    Value* existing = dst.find(key);
    if (existing != nullptr && existing->is_object() && value.is_object()) {
      *existing = deep_merge(*existing, value);
    } else {
      dst.set(key, value);
    }
  }
  return out;
}

Result<Value> merge(const Value* old_value, const Value& update) {
  if (!update.is_object()) return mismatch("merge", "the update", update);
  if (absent_or_null(old_value)) return update;
  if (!old_value->is_object()) return mismatch("merge", "the current value", *old_value);
  return deep_merge(*old_value, update);
}

Result<Value> add(const Value* old_value, const Value& update) {
  if (!update.is_number()) return mismatch("add", "the update", update);
  if (absent_or_null(old_value)) return update;
  if (!old_value->is_number()) return mismatch("add", "the current value", *old_value);
  if (old_value->is_int() && update.is_int()) {
    int64_t sum = 0;
    if (__builtin_add_overflow(old_value->as_int(), update.as_int(), &sum)) {
      return Status::invalid_argument("add: integer overflow (" + old_value->to_json() + " + " +
                                      update.to_json() + " does not fit in 64 bits)");
    }
    return Value(static_cast<long long>(sum));
  }
  return Value(old_value->as_double() + update.as_double());
}

// Exact comparison of two numbers, also between an int64 and a double: long
// double holds every int64 exactly on x86-64.
long double as_long_double(const Value& v) {
  return v.is_int() ? static_cast<long double>(v.as_int()) : static_cast<long double>(v.as_double());
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int()) return a.as_int() < b.as_int();
  return as_long_double(a) < as_long_double(b);
}

Result<Value> min_max(bool want_min, const Value* old_value, const Value& update) {
  const char* name = want_min ? "min" : "max";
  if (!update.is_number()) return mismatch(name, "the update", update);
  if (absent_or_null(old_value)) return update;
  if (!old_value->is_number()) return mismatch(name, "the current value", *old_value);
  bool update_wins = want_min ? less_than(update, *old_value) : less_than(*old_value, update);
  return update_wins ? update : *old_value;
}

Result<Value> add_messages(const Value* old_value, const Value& update) {
  if (!update.is_object() && !update.is_array()) {
    return mismatch("add_messages", "the update", update);
  }
  Value out;
  if (absent_or_null(old_value)) {
    out = Value::array();
  } else if (old_value->is_array()) {
    out = *old_value;
  } else {
    return mismatch("add_messages", "the current value", *old_value);
  }
  Array& list = out.mutable_array();
  auto apply_one = [&list](const Value& msg, size_t index) -> Status {
    if (!msg.is_object()) {
      return Status::invalid_argument("add_messages: message " + std::to_string(index) + " is " +
                                      std::string(type_name(msg.type())) + ", not an object");
    }
    const Value* id = msg.find("id");
    if (id == nullptr || !id->is_string()) {
      Value fresh = msg;
      fresh.set("id", "msg_" + new_uuid());
      list.push_back(std::move(fresh));
      return Status();
    }
    const std::string& wanted = id->as_string();
    auto same_id = [&wanted](const Value& m) {
      const Value* mid = m.find("id");
      return mid != nullptr && mid->is_string() && mid->as_string() == wanted;
    };
    if (msg["remove"].get_bool(false)) {
      list.erase(std::remove_if(list.begin(), list.end(), same_id), list.end());
      return Status();
    }
    for (Value& existing : list) {
      if (same_id(existing)) {
        existing = msg;
        return Status();
      }
    }
    list.push_back(msg);
    return Status();
  };
  if (update.is_object()) {
    ORCH_RETURN_IF_ERROR(apply_one(update, 0));
  } else {
    for (size_t i = 0; i < update.as_array().size(); ++i) {
      ORCH_RETURN_IF_ERROR(apply_one(update.as_array()[i], i));
    }
  }
  return out;
}

}  // namespace

Result<Value> apply_reducer(ReducerKind reducer, const Value* old_value, const Value& update) {
  switch (reducer) {
    case ReducerKind::kLastValue: return update;
    case ReducerKind::kAppend: return append(old_value, update);
    case ReducerKind::kMerge: return merge(old_value, update);
    case ReducerKind::kAdd: return add(old_value, update);
    case ReducerKind::kMin: return min_max(true, old_value, update);
    case ReducerKind::kMax: return min_max(false, old_value, update);
    case ReducerKind::kAddMessages: return add_messages(old_value, update);
  }
  return Status::internal("unknown reducer");
}

}  // namespace orch
