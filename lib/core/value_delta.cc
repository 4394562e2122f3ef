// SPDX-License-Identifier: MIT
// Value deltas (format in value_delta.h).
#include "core/value_delta.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace orch {
namespace {

// Objects nested deeper than this are replaced whole rather than diffed, which
// bounds the recursion and the length of stored paths.
constexpr int kMaxDiffDepth = 32;

bool same_double(double a, double b) {
  // Bitwise, so 0.0 and -0.0 (which print differently) count as a change.
  uint64_t x = 0;
  uint64_t y = 0;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  return x == y;
}

// True when applying "s" for new keys and "r" for dropped keys to `before`
// yields `after`'s key order: the kept keys keep their relative order and all
// come before the new ones.
bool key_order_reachable(const Object& before, const Object& after) {
  size_t i = 0;
  bool seen_new_key = false;
  for (const auto& member : after) {
    if (before.find(member.first) == nullptr) {
      seen_new_key = true;
      continue;
    }
    if (seen_new_key) return false;
    while (i < before.size() && before.at_index(i).first != member.first) ++i;
    if (i == before.size()) return false;
    ++i;
  }
  return true;
}

// True when `before` is a proper prefix of `after`.
bool only_grew(const Array& before, const Array& after) {
  if (after.size() <= before.size()) return false;
  // A list that grows from one checkpoint to the next still shares all but
  // its last chunk with the previous state: only the rest is compared.
  for (size_t i = before.shared_prefix(after); i < before.size(); ++i) {
    if (!before[i].shares_storage_with(after[i]) && !identical_values(before[i], after[i]))
      return false;
  }
  return true;
}

class DeltaBuilder {
 public:
  void diff(const Value& before, const Value& after, int depth) {
    if (before.shares_storage_with(after)) return;
    if (before.is_object() && after.is_object() && depth < kMaxDiffDepth &&
        key_order_reachable(before.as_object(), after.as_object())) {
      diff_objects(before.as_object(), after.as_object(), depth);
      return;
    }
    if (before.is_array() && after.is_array() && only_grew(before.as_array(), after.as_array())) {
      const Array& items = after.as_array();
      Array added(items.begin() + static_cast<ptrdiff_t>(before.size()), items.end());
      emit("a", Value(std::move(added)));
      return;
    }
    if (identical_values(before, after)) return;
    emit("s", after);
  }

  Value take() { return Value(std::move(ops_)); }

 private:
  void diff_objects(const Object& before, const Object& after, int depth) {
    for (const auto& member : before) {
      if (after.find(member.first) != nullptr) continue;
      path_.push_back(member.first);
      ops_.push_back(Value::array({"r", path_value()}));
      path_.pop_back();
    }
    for (const auto& member : after) {
      path_.push_back(member.first);
      const Value* old = before.find(member.first);
      if (old == nullptr) {
        emit("s", member.second);
      } else {
        diff(*old, member.second, depth + 1);
      }
      path_.pop_back();
    }
  }

  void emit(const char* op, Value operand) {
    ops_.push_back(Value::array({op, path_value(), std::move(operand)}));
  }

  Value path_value() const {
    Array keys;
    keys.reserve(path_.size());
    for (const std::string& key : path_) keys.emplace_back(key);
    return Value(std::move(keys));
  }

  std::vector<std::string> path_;
  Array ops_;
};

Status bad_op(size_t index, const std::string& why) {
  return Status::invalid_argument("delta operation " + std::to_string(index) + ": " + why);
}

}  // namespace

bool identical_values(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  if (a.shares_storage_with(b)) return true;
  switch (a.type()) {
    case Value::Type::kNull:
      return true;
    case Value::Type::kBool:
      return a.as_bool() == b.as_bool();
    case Value::Type::kInt:
      return a.as_int() == b.as_int();
    case Value::Type::kDouble:
      return same_double(a.as_double(), b.as_double());
    case Value::Type::kString:
      return a.as_string() == b.as_string();
    case Value::Type::kArray: {
      const Array& x = a.as_array();
      const Array& y = b.as_array();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!identical_values(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Type::kObject: {
      const Object& x = a.as_object();
      const Object& y = b.as_object();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        const auto& mx = x.at_index(i);
        const auto& my = y.at_index(i);
        if (mx.first != my.first || !identical_values(mx.second, my.second)) return false;
      }
      return true;
    }
  }
  return false;
}

Value make_value_delta(const Value& before, const Value& after) {
  DeltaBuilder builder;
  builder.diff(before, after, 0);
  return builder.take();
}

Status apply_value_delta(const Value& delta, Value* target) {
  if (!delta.is_array()) return Status::invalid_argument("delta is not an array");
  const Array& ops = delta.as_array();
  for (size_t i = 0; i < ops.size(); ++i) {
    const Value& op = ops[i];
    if (!op.is_array() || op.size() < 2 || !op.as_array()[0].is_string() ||
        !op.as_array()[1].is_array()) {
      return bad_op(i, "expected [kind, path, ...]");
    }
    const std::string& kind = op.as_array()[0].as_string();
    const Array& path = op.as_array()[1].as_array();
    const bool takes_operand = kind == "s" || kind == "a";
    if ((takes_operand && op.size() != 3) || (kind == "r" && op.size() != 2) ||
        (!takes_operand && kind != "r")) {
      return bad_op(i, "unknown kind or wrong arity");
    }
    for (const Value& key : path) {
      if (!key.is_string()) return bad_op(i, "path keys must be strings");
    }

    // Walk to the parent of the last key, unsharing only the objects on the
    // path so earlier checkpoints that share the rest stay untouched.
    Value* node = target;
    for (size_t k = 0; k + 1 < path.size(); ++k) {
      if (!node->is_object()) return bad_op(i, "path crosses a non-object");
      node = node->mutable_object().find(path[k].as_string());
      if (node == nullptr) return bad_op(i, "path names a missing key");
    }
    if (path.empty()) {
      if (kind == "r") return bad_op(i, "cannot remove the root");
    } else {
      if (!node->is_object()) return bad_op(i, "path crosses a non-object");
      Object& parent = node->mutable_object();
      const std::string& key = path.back().as_string();
      if (kind == "s") {
        parent.set(key, op.as_array()[2]);
        continue;
      }
      if (kind == "r") {
        if (!parent.erase(key)) return bad_op(i, "removes a missing key");
        continue;
      }
      node = parent.find(key);
      if (node == nullptr) return bad_op(i, "appends to a missing key");
    }
    const Value& operand = op.as_array()[2];
    if (kind == "s") {
      *node = operand;
      continue;
    }
    if (!node->is_array() || !operand.is_array()) return bad_op(i, "append needs arrays");
    Array& items = node->mutable_array();
    items.insert(items.end(), operand.as_array().begin(), operand.as_array().end());
  }
  return Status();
}

}  // namespace orch
