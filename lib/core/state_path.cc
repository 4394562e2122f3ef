// SPDX-License-Identifier: MIT
#include "orch/state_path.h"

#include <charconv>
#include <cmath>
#include <system_error>

namespace orch {
namespace {

constexpr std::string_view kStatePrefix = "state.";

// Indices longer than this cannot address a real array (and would overflow).
constexpr size_t kMaxIndexDigits = 18;

// Parses a non-empty run of decimal digits; false for anything else.
bool parse_decimal(std::string_view s, size_t* out) {
  if (s.empty() || s.size() > kMaxIndexDigits) return false;
  size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  *out = v;
  return true;
}

// A segment parsed in place, borrowing its key from the path text.
struct SegmentView {
  std::string_view key;
  bool has_key = true;
  StatePath::Segment::Index index = StatePath::Segment::Index::kNone;
  size_t at = 0;
};

// Splits one segment into key and bracket index. False when the bracket part
// is malformed.
bool parse_segment(std::string_view seg, SegmentView* out) {
  using Index = StatePath::Segment::Index;
  size_t open = seg.find('[');
  if (open == std::string_view::npos) {
    out->key = seg;
    out->has_key = true;
    out->index = Index::kNone;
    return true;
  }
  // The bracket must close the segment: "key[...]" with nothing after it.
  if (seg.back() != ']' || seg.size() - open < 3) return false;
  std::string_view inner = seg.substr(open + 1, seg.size() - open - 2);
  out->key = seg.substr(0, open);
  out->has_key = open > 0;
  if (inner == "-1") {
    out->index = Index::kLast;
    return true;
  }
  out->index = Index::kAt;
  return parse_decimal(inner, &out->at);
}

// Applies an object key (or, on an array, a numeric key) to `cur`.
const Value* apply_key(const Value* cur, std::string_view key, bool key_is_index,
                       size_t key_index) {
  if (cur->is_object()) return cur->as_object().find(key);
  if (cur->is_array() && key_is_index) return cur->at(key_index);
  return nullptr;
}

const Value* apply_index(const Value* cur, StatePath::Segment::Index index, size_t at) {
  using Index = StatePath::Segment::Index;
  if (index == Index::kNone) return cur;
  if (!cur->is_array()) return nullptr;
  if (index == Index::kLast) {
    const Array& a = cur->as_array();
    return a.empty() ? nullptr : &a.back();
  }
  return cur->at(at);
}

const Value* apply_segment(const Value* cur, const SegmentView& seg) {
  if (seg.has_key) {
    size_t key_index = 0;
    bool key_is_index = cur->is_array() && parse_decimal(seg.key, &key_index);
    cur = apply_key(cur, seg.key, key_is_index, key_index);
    if (cur == nullptr) return nullptr;
  }
  return apply_index(cur, seg.index, seg.at);
}

// Calls fn(segment) for each '.'-separated segment of a non-empty path.
template <typename Fn>
void for_each_segment(std::string_view path, Fn&& fn) {
  if (path.empty()) return;
  while (true) {
    size_t dot = path.find('.');
    if (!fn(path.substr(0, dot))) return;
    if (dot == std::string_view::npos) return;
    path.remove_prefix(dot + 1);
  }
}

}  // namespace

std::string_view strip_state_prefix(std::string_view path) {
  if (path.substr(0, kStatePrefix.size()) == kStatePrefix) path.remove_prefix(kStatePrefix.size());
  return path;
}

Result<StatePath> StatePath::compile(std::string_view path, StatePrefix prefix) {
  if (prefix == StatePrefix::kStrip) path = strip_state_prefix(path);
  StatePath result;
  result.text_ = std::string(path);
  std::string_view bad;
  bool ok = true;
  for_each_segment(path, [&](std::string_view text) {
    SegmentView view;
    if (!parse_segment(text, &view)) {
      bad = text;
      ok = false;
      return false;
    }
    Segment seg;
    seg.key = std::string(view.key);
    seg.has_key = view.has_key;
    seg.key_is_index = view.has_key && parse_decimal(view.key, &seg.key_index);
    seg.index = view.index;
    seg.at = view.at;
    result.segments_.push_back(std::move(seg));
    return true;
  });
  if (!ok) {
    return Status::invalid_argument("invalid state path '" + std::string(path) + "': segment '" +
                                    std::string(bad) +
                                    "' has a malformed index (use key[N] or key[-1])");
  }
  return result;
}

const Value* StatePath::find(const Value& root) const {
  const Value* cur = &root;
  for (const Segment& seg : segments_) {
    if (seg.has_key) {
      cur = apply_key(cur, seg.key, seg.key_is_index, seg.key_index);
      if (cur == nullptr) return nullptr;
    }
    cur = apply_index(cur, seg.index, seg.at);
    if (cur == nullptr) return nullptr;
  }
  return cur;
}

const Value* find_state_path(const Value& root, std::string_view path, StatePrefix prefix) {
  if (prefix == StatePrefix::kStrip) path = strip_state_prefix(path);
  const Value* cur = &root;
  for_each_segment(path, [&](std::string_view text) {
    SegmentView view;
    cur = parse_segment(text, &view) ? apply_segment(cur, view) : nullptr;
    return cur != nullptr;
  });
  return cur;
}

std::string route_value_string(const Value& value) {
  switch (value.type()) {
    case Value::Type::kBool:
      return value.as_bool() ? "true" : "false";
    case Value::Type::kString:
      return value.as_string();
    case Value::Type::kDouble: {
      double d = value.as_double();
      if (!std::isfinite(d)) return "null";
      if (d == 0) return "0";  // also -0.0
      // Shortest round-trip digits in fixed notation: 2.0 → "2", 1e20 spelled out.
      // The longest case (denormals, ~1e308) needs under 330 characters.
      char buf[512];
      auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::fixed);
      if (res.ec != std::errc()) return value.to_json();
      return std::string(buf, res.ptr);
    }
    default:
      return value.to_json();
  }
}

}  // namespace orch
