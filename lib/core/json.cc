// SPDX-License-Identifier: MIT
//
// JSON text <-> Value. Parsing is a RapidJSON SAX pass that builds Values
// directly (no intermediate DOM); writing is hand-rolled for speed, with fmt
// providing shortest round-trip doubles.
#include <fmt/format.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <cmath>
#include <limits>

#include "orch/value.h"

namespace orch {
namespace {

class ValueBuilder {
 public:
  explicit ValueBuilder(size_t max_depth) : max_depth_(max_depth) {}

  bool Null() { return add(Value()); }
  bool Bool(bool b) { return add(Value(b)); }
  bool Int(int i) { return add(Value(i)); }
  bool Uint(unsigned u) { return add(Value(u)); }
  bool Int64(int64_t i) { return add(Value(static_cast<long long>(i))); }
  bool Uint64(uint64_t u) { return add(Value(static_cast<unsigned long long>(u))); }
  bool Double(double d) { return add(Value(d)); }
  // Numbers arrive as validated text (kParseNumbersAsStringsFlag) and are
  // converted with std::from_chars: exact int64s, correctly rounded doubles,
  // and none of RapidJSON 1.1's full-precision strtod (which has undefined
  // behaviour on inputs like "0E92").
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    const char* end = s + n;
    bool integral = std::find_if(s, end, [](char c) { return c == '.' || c == 'e' || c == 'E'; }) == end;
    if (integral) {
      int64_t i = 0;
      auto r = std::from_chars(s, end, i);
      if (r.ec == std::errc() && r.ptr == end) return add(Value(static_cast<long long>(i)));
      // Too big for int64: fall through to a double.
    }
    double d = 0;
    auto r = std::from_chars(s, end, d);
    if (r.ec == std::errc::result_out_of_range) {
      // Underflow (a negative exponent) is zero; overflow cannot be held.
      const char* e = std::find_if(s, end, [](char c) { return c == 'e' || c == 'E'; });
      if (e == end || e + 1 == end || e[1] != '-') {
        error_ = "number too big for a double";
        return false;
      }
      d = *s == '-' ? -0.0 : 0.0;
    } else if (r.ec != std::errc() || r.ptr != end) {
      error_ = "invalid number";
      return false;
    }
    return add(Value(d));
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (!valid_text(s, n)) return false;
    return add(Value(std::string(s, n)));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (!valid_text(s, n)) return false;
    stack_.back().key.assign(s, n);
    return true;
  }
  bool StartObject() { return push(true); }
  bool StartArray() { return push(false); }
  bool EndObject(rapidjson::SizeType) { return pop(); }
  bool EndArray(rapidjson::SizeType) { return pop(); }

  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }
  Value take_root() { return std::move(root_); }

 private:
  struct Frame {
    bool is_object;
    Array array;
    Object object;
    std::string key;
  };

  // RapidJSON 1.1 decodes a lone "\udc00" escape into a UTF-8 encoded
  // surrogate (ED B0..BF xx), which is not valid UTF-8; reject it.
  bool valid_text(const char* s, size_t n) {
    const char* p = s;
    const char* end = s + n;
    while ((p = static_cast<const char*>(std::memchr(p, '\xED', static_cast<size_t>(end - p)))) != nullptr) {
      if (p + 1 < end && (static_cast<unsigned char>(p[1]) & 0xE0) == 0xA0) {
        error_ = "invalid \\u escape: unpaired UTF-16 surrogate";
        return false;
      }
      ++p;
    }
    return true;
  }

  bool push(bool is_object) {
    if (stack_.size() >= max_depth_) {
      too_deep_ = true;
      return false;
    }
    stack_.push_back(Frame{is_object, {}, {}, {}});
    return true;
  }

  bool pop() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    return add(f.is_object ? Value(std::move(f.object)) : Value(std::move(f.array)));
  }

  bool add(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
    } else if (stack_.back().is_object) {
      // Duplicate keys: Object::set replaces in place, so the last one wins at
      // the first one's position.
      stack_.back().object.set(std::move(stack_.back().key), std::move(v));
    } else {
      stack_.back().array.push_back(std::move(v));
    }
    return true;
  }

  size_t max_depth_;
  bool too_deep_ = false;
  std::string error_;
  std::vector<Frame> stack_;
  Value root_;
};

void write_string(std::string_view s, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run_start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run_start, i - run_start);
    run_start = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
    }
  }
  out->append(s.data() + run_start, s.size() - run_start);
  out->push_back('"');
}

void write_double(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");
    return;
  }
  size_t start = out->size();
  fmt::format_to(std::back_inserter(*out), "{}", d);
  // fmt prints 1.0 as "1"; keep a fraction so the text reads back as a double.
  if (out->find_first_of(".eE", start) == std::string::npos) out->append(".0");
}

}  // namespace

void Value::write_json(std::string* out) const {
  switch (type()) {
    case Type::kNull: out->append("null"); return;
    case Type::kBool: out->append(as_bool() ? "true" : "false"); return;
    case Type::kInt: fmt::format_to(std::back_inserter(*out), "{}", as_int()); return;
    case Type::kDouble: write_double(as_double(), out); return;
    case Type::kString: write_string(as_string(), out); return;
    case Type::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Value& v : as_array()) {
        if (!first) out->push_back(',');
        first = false;
        v.write_json(out);
      }
      out->push_back(']');
      return;
    }
    case Type::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& m : as_object()) {
        if (!first) out->push_back(',');
        first = false;
        write_string(m.first, out);
        out->push_back(':');
        m.second.write_json(out);
      }
      out->push_back('}');
      return;
    }
  }
}

std::string Value::to_json() const {
  std::string out;
  write_json(&out);
  return out;
}

Result<Value> parse_json(std::string_view text, const ParseOptions& options, size_t* error_offset) {
  constexpr unsigned kFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag |
                              rapidjson::kParseNumbersAsStringsFlag;
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  ValueBuilder builder(options.max_depth);
  rapidjson::ParseResult result = reader.Parse<kFlags>(stream, builder);
  if (result) return builder.take_root();

  size_t offset = result.Offset();
  if (error_offset != nullptr) *error_offset = offset;
  std::string why = builder.too_deep()             ? fmt::format("nesting deeper than {} levels", options.max_depth)
                    : !builder.error().empty() ? builder.error()
                                               : std::string(rapidjson::GetParseError_En(result.Code()));
  return Status::invalid_argument(fmt::format("invalid JSON at byte {}: {}", offset, why));
}

}  // namespace orch
