// SPDX-License-Identifier: MIT
//
// A small scan for the state keys a template reads, for validation's
// undefined_state_key warning. It does not render anything and deliberately
// does not depend on the template engine: it only has to find `state.X` at the
// start of a `{{ }}` expression or of an `{% if %}` condition, the forms the
// renderer resolves against state.
#include <unordered_set>

#include "workflow/workflow_internal.h"

namespace orch::workflow_internal {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// "state.plan.files" -> "plan"; "" when `expr` does not start with a state path.
std::string_view state_key_of(std::string_view expr) {
  constexpr std::string_view kPrefix = "state.";
  if (expr.substr(0, kPrefix.size()) != kPrefix) return {};
  std::string_view rest = expr.substr(kPrefix.size());
  size_t end = 0;
  // Stop at the path's next segment, an index, or whatever follows the path
  // (a filter, an operator, the closing of the tag).
  while (end < rest.size() && rest[end] != '.' && rest[end] != '[' && !is_space(rest[end]) &&
         std::string_view("|}%=!<>()").find(rest[end]) == std::string_view::npos) {
    ++end;
  }
  return rest.substr(0, end);
}

}  // namespace

std::vector<std::string> referenced_state_keys(std::string_view text) {
  std::vector<std::string> keys;
  // Repeats are found in a set: searching `keys` would be quadratic in a text
  // naming many distinct keys.
  std::unordered_set<std::string_view> seen;
  auto add = [&keys, &seen](std::string_view key) {
    if (!key.empty() && seen.insert(key).second) keys.emplace_back(key);
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find('{', pos);
    if (open == std::string_view::npos || open + 1 >= text.size()) break;
    char kind = text[open + 1];
    if (kind != '{' && kind != '%') {
      pos = open + 1;
      continue;
    }
    std::string_view closer = kind == '{' ? "}}" : "%}";
    size_t close = text.find(closer, open + 2);
    // The renderer treats an unterminated tag as literal text (or an error).
    if (close == std::string_view::npos) break;
    std::string_view inner = trim(text.substr(open + 2, close - open - 2));
    if (kind == '{') {
      add(state_key_of(inner));
    } else if (inner.size() > 2 && inner.substr(0, 2) == "if" && is_space(inner[2])) {
      add(state_key_of(trim(inner.substr(3))));
    }
    pos = close + 2;
  }
  return keys;
}

}  // namespace orch::workflow_internal
