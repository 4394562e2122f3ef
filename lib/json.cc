// SPDX-License-Identifier: MIT
//
// JSON text <-> Value. Parsing is a RapidJSON SAX pass that builds Values
// directly (no intermediate DOM); writing is hand-rolled for speed, with fmt
// providing shortest round-trip doubles.
#include <fmt/format.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

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
  bool RawNumber(const char*, rapidjson::SizeType, bool) { return false; }  // not enabled
  bool String(const char* s, rapidjson::SizeType n, bool) { return add(Value(std::string(s, n))); }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    stack_.back().key.assign(s, n);
    return true;
  }
  bool StartObject() { return push(true); }
  bool StartArray() { return push(false); }
  bool EndObject(rapidjson::SizeType) { return pop(); }
  bool EndArray(rapidjson::SizeType) { return pop(); }

  bool too_deep() const { return too_deep_; }
  Value take_root() { return std::move(root_); }

 private:
  struct Frame {
    bool is_object;
    Array array;
    Object object;
    std::string key;
  };

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
                              rapidjson::kParseFullPrecisionFlag;
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  ValueBuilder builder(options.max_depth);
  rapidjson::ParseResult result = reader.Parse<kFlags>(stream, builder);
  if (result) return builder.take_root();

  size_t offset = result.Offset();
  if (error_offset != nullptr) *error_offset = offset;
  std::string why = builder.too_deep()
                        ? fmt::format("nesting deeper than {} levels", options.max_depth)
                        : std::string(rapidjson::GetParseError_En(result.Code()));
  return Status::invalid_argument(fmt::format("invalid JSON at byte {}: {}", offset, why));
}

}  // namespace orch
