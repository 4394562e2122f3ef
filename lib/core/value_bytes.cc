// SPDX-License-Identifier: MIT
#include "core/value_bytes.h"

namespace orch::internal {

size_t value_bytes(const Value& v) {
  switch (v.type()) {
    case Value::Type::kString:
      return v.as_string().size() + 2;
    case Value::Type::kArray: {
      size_t n = 2;
      for (const Value& item : v.as_array()) n += value_bytes(item) + 1;
      return n;
    }
    case Value::Type::kObject: {
      size_t n = 2;
      for (const auto& [key, item] : v.as_object()) n += key.size() + 4 + value_bytes(item);
      return n;
    }
    case Value::Type::kNull:
    case Value::Type::kBool:
      return 5;
    default:
      return 8;  // numbers: a typical width
  }
}

}  // namespace orch::internal
