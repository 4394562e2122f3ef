// SPDX-License-Identifier: MIT
#include "id_rules.h"

namespace orch::server {

std::string id_problem(const std::string& id, const std::string& what) {
  if (id.size() > kMaxIdBytes) {
    return what + " is " + std::to_string(id.size()) + " bytes long; the limit is " + std::to_string(kMaxIdBytes);
  }
  return control_character_problem(id, what);
}

std::string control_character_problem(const std::string& value, const std::string& what) {
  for (unsigned char ch : value) {
    if (ch < 0x20 || ch == 0x7f) return what + " must not contain control characters";
  }
  return "";
}

}  // namespace orch::server
