// SPDX-License-Identifier: MIT
// Packed values (see sqlite_packed_value.h).
//
// Each value starts with a tag byte:
//   0x00 null, 0x01 false, 0x02 true
//   0x03 int: zig-zag varint          0x04 double: 8 bytes, little-endian
//   0x05 string: varint length, bytes 0x06 array: varint count, items
//   0x07 object: varint count, (key, value) pairs; a key is a string value
//   0x08 UUID string: 16 bytes (lower-case 8-4-4-4-12 text)
//   0x09 repeated string (schema 10): varint index into the strings of
//        kMinRepeated..kMaxRepeated bytes written out before in the same
//        packing (ValuePacker), the first kMaxRepeatable of them
//   0x20..0x3f string of 0..31 bytes, bytes follow
//   0x40..0x7f int 0..63
//   0x80..0xff string number (tag - 0x80) of kDictionary
#include "store/sqlite/sqlite_packed_value.h"

#include <sqlite3.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "store/sqlite/sqlite_definitions.h"

namespace orch::sqlite {
namespace {

enum Tag : unsigned char {
  kNull = 0x00,
  kFalse = 0x01,
  kTrue = 0x02,
  kInt = 0x03,
  kDouble = 0x04,
  kString = 0x05,
  kArray = 0x06,
  kObject = 0x07,
  kUuid = 0x08,
  kRepeat = 0x09,
  kShortString = 0x20,  // + length, up to 31
  kSmallInt = 0x40,     // + value, up to 63
  kWord = 0x80,         // + index into kDictionary
};

// Strings the engine writes in nearly every event, and in checkpoint deltas.
// Append only (at most 128): a stored byte names its string for good.
constexpr const char* kDictionary[] = {
    "id", "name", "type", "ok", "duration_ms", "step", "updates", "state", "input", "step_id", "node", "attempt",
    "output", "checkpoint_id", "version", "error", "route", "transform", "agent", "interrupt", "subgraph", "send",
    "task", "state_key", "reason", "message", "status", "result", "metadata", "scheduler", "ready", "dead",
    "completed_nodes", "route_results", "edge_count", "end_reached", "workflow_version", "__start__", "__end__",
    "__init__", "s", "a", "r", "tokens", "input_tokens", "output_tokens", "worker_id", "value", "data", "run_id",
    "child_run_id", "items", "index", "count", "log", "messages", "content", "role"};
constexpr int kDictionarySize = static_cast<int>(sizeof(kDictionary) / sizeof(kDictionary[0]));
static_assert(kDictionarySize <= 128, "a dictionary index fits in a tag byte");

// A packed document nests no deeper than a parsed JSON one (JsonOptions).
constexpr int kMaxDepth = 512;

constexpr size_t kLongestWord = 20;

// The dictionary's words by length: a string is compared only with the few
// of its own length (every key and string of every event goes through here).
struct WordsByLength {
  std::vector<std::pair<std::string_view, int>> words[kLongestWord + 1];
  WordsByLength() {
    for (int i = 0; i < kDictionarySize; ++i) {
      const std::string_view word = kDictionary[i];
      if (word.size() <= kLongestWord) words[word.size()].emplace_back(word, i);  // longer: never packed as a word
    }
  }
};

int dictionary_index(const std::string& s) {
  static const WordsByLength by_length;
  if (s.empty() || s.size() > kLongestWord) return -1;
  for (const auto& [word, index] : by_length.words[s.size()]) {
    if (word[0] == s[0] && word == s) return index;
  }
  return -1;
}

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// A string written out whole of this many bytes (as text) joins the
// packing's table of repeatable strings, while there is room: a repeat is 2
// bytes, a short string 1 + its length (a UUID 17), so shorter ones gain
// nothing, and the cap keeps what a repeat can expand to small.
constexpr size_t kMinRepeated = 4;
constexpr size_t kMaxRepeated = 64;
constexpr size_t kMaxRepeatable = 255;

bool is_repeatable(size_t size) { return size >= kMinRepeated && size <= kMaxRepeated; }

}  // namespace

void put_varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

ValuePacker::ValuePacker(std::string* out) : out_(out) {}

uint32_t ValuePacker::hash(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

void ValuePacker::put_string(const std::string& s) {
  if (const int word = dictionary_index(s); word >= 0) {
    out_->push_back(static_cast<char>(kWord + word));
    return;
  }
  const bool repeatable = is_repeatable(s.size());
  size_t slot = 0;
  if (repeatable) {
    if (slots_.empty()) slots_.assign(kSlots, 0);
    // Open addressing; a slot holds a table index + 1, 0 when free.
    for (slot = hash(s) & (kSlots - 1); slots_[slot] != 0; slot = (slot + 1) & (kSlots - 1)) {
      if (strings_[slots_[slot] - 1] == s) {
        out_->push_back(static_cast<char>(kRepeat));
        put_varint(out_, slots_[slot] - 1u);
        return;
      }
    }
    if (strings_.size() < kMaxRepeatable) {
      strings_.push_back(s);
      slots_[slot] = static_cast<uint16_t>(strings_.size());
    }
  }
  // compact_id accepts upper-case digits too; only lower case reads back the same.
  if (s.size() == 36 && is_lower_hex(s[0])) {
    if (std::optional<std::string> bytes = compact_id(s)) {
      bool lower = true;
      for (char c : s) lower = lower && (c == '-' || is_lower_hex(c));
      if (lower) {
        out_->push_back(static_cast<char>(kUuid));
        out_->append(*bytes);
        return;
      }
    }
  }
  if (s.size() < 32) {
    out_->push_back(static_cast<char>(kShortString + s.size()));
  } else {
    out_->push_back(static_cast<char>(kString));
    put_varint(out_, s.size());
  }
  out_->append(s);
}

bool ValuePacker::pack(const Value& v) { return put_value(v, 0); }

bool ValuePacker::put_value(const Value& v, int depth) {
  std::string* out = out_;
  if (depth > kMaxDepth) return false;
  switch (v.type()) {
    case Value::Type::kNull:
      out->push_back(static_cast<char>(kNull));
      return true;
    case Value::Type::kBool:
      out->push_back(static_cast<char>(v.as_bool() ? kTrue : kFalse));
      return true;
    case Value::Type::kInt: {
      const int64_t i = v.as_int();
      if (i >= 0 && i < 64) {
        out->push_back(static_cast<char>(kSmallInt + i));
      } else {
        out->push_back(static_cast<char>(kInt));
        put_varint(out, (static_cast<uint64_t>(i) << 1) ^ static_cast<uint64_t>(i >> 63));
      }
      return true;
    }
    case Value::Type::kDouble: {
      const double d = v.as_double();
      uint64_t bits = 0;
      std::memcpy(&bits, &d, sizeof bits);
      out->push_back(static_cast<char>(kDouble));
      for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
      return true;
    }
    case Value::Type::kString:
      put_string(v.as_string());
      return true;
    case Value::Type::kArray:
      out->push_back(static_cast<char>(kArray));
      put_varint(out, v.as_array().size());
      for (const Value& item : v.as_array()) {
        if (!put_value(item, depth + 1)) return false;
      }
      return true;
    case Value::Type::kObject:
      out->push_back(static_cast<char>(kObject));
      put_varint(out, v.as_object().size());
      for (const auto& [key, item] : v.as_object()) {
        put_string(key);
        if (!put_value(item, depth + 1)) return false;
      }
      return true;
  }
  return false;
}

namespace {

}  // namespace

ValueUnpacker::ValueUnpacker(std::string_view bytes) : bytes_(bytes) {}

Status ValueUnpacker::unpack(Value* out) { return read_value(out, 0); }

Status ValueUnpacker::read_value(Value* out, int depth) {
  if (depth > kMaxDepth) return fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  unsigned char tag = 0;
  if (!read_byte(&tag)) return fail("truncated");
  if (tag >= kSmallInt && tag < kWord) {
    *out = Value(static_cast<int64_t>(tag - kSmallInt));
    return Status();
  }
  switch (tag) {
    case kNull:
      *out = Value();
      return Status();
    case kFalse:
    case kTrue:
      *out = Value(tag == kTrue);
      return Status();
    case kInt: {
      uint64_t z = 0;
      if (!read_varint(&z)) return fail("truncated integer");
      *out = Value(static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1)));
      return Status();
    }
    case kDouble: {
      if (bytes_.size() - pos_ < 8) return fail("truncated number");
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits |= static_cast<uint64_t>(static_cast<unsigned char>(bytes_[pos_ + i])) << (8 * i);
      pos_ += 8;
      double d = 0;
      std::memcpy(&d, &bits, sizeof d);
      *out = Value(d);
      return Status();
    }
    case kArray: {
      uint64_t count = 0;
      ORCH_RETURN_IF_ERROR(read_count(&count));
      Array items;
      items.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) {
        Value item;
        ORCH_RETURN_IF_ERROR(read_value(&item, depth + 1));
        items.push_back(std::move(item));
      }
      *out = Value(std::move(items));
      return Status();
    }
    case kObject: {
      uint64_t count = 0;
      ORCH_RETURN_IF_ERROR(read_count(&count));
      Object members;
      members.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) {
        std::string key;
        ORCH_RETURN_IF_ERROR(read_string(&key));
        Value item;
        ORCH_RETURN_IF_ERROR(read_value(&item, depth + 1));
        members.set(std::move(key), std::move(item));
      }
      *out = Value(std::move(members));
      return Status();
    }
    default: {
      --pos_;
      std::string s;
      ORCH_RETURN_IF_ERROR(read_string(&s));
      *out = Value(std::move(s));
      return Status();
    }
  }
}

Status ValueUnpacker::fail(const std::string& why) const {
  return Status::invalid_argument("packed value: " + why + " at byte " + std::to_string(pos_));
}

bool ValueUnpacker::read_byte(unsigned char* b) {
  if (pos_ >= bytes_.size()) return false;
  *b = static_cast<unsigned char>(bytes_[pos_++]);
  return true;
}

bool ValueUnpacker::read_varint(uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    unsigned char b = 0;
    if (!read_byte(&b)) return false;
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// A count of items, each at least a byte: no more than the bytes left.
Status ValueUnpacker::read_count(uint64_t* count) {
  if (!read_varint(count)) return fail("truncated count");
  if (*count > bytes_.size() - pos_) return fail("count larger than the bytes left");
  return Status();
}

Status ValueUnpacker::read_string(std::string* out) {
  unsigned char tag = 0;
  if (!read_byte(&tag)) return fail("truncated");
  if (tag >= kWord) {
    const int index = tag - kWord;
    if (index >= kDictionarySize) return fail("unknown dictionary string " + std::to_string(index));
    *out = kDictionary[index];
    return Status();
  }
  if (tag == kRepeat) {
    uint64_t index = 0;
    if (!read_varint(&index)) return fail("truncated repeat");
    if (index >= strings_.size()) return fail("repeat of string " + std::to_string(index) + " of " +
                                              std::to_string(strings_.size()));
    *out = strings_[static_cast<size_t>(index)];
    return Status();
  }
  uint64_t size = 0;
  if (tag >= kShortString && tag < kSmallInt) {
    size = tag - kShortString;
  } else if (tag == kString) {
    if (!read_varint(&size)) return fail("truncated string length");
  } else if (tag == kUuid) {
    if (bytes_.size() - pos_ < 16) return fail("truncated UUID");
    static const char kHex[] = "0123456789abcdef";
    out->clear();
    out->reserve(36);
    for (int i = 0; i < 16; ++i) {
      if (out->size() == 8 || out->size() == 13 || out->size() == 18 || out->size() == 23) out->push_back('-');
      const auto b = static_cast<unsigned char>(bytes_[pos_ + i]);
      out->push_back(kHex[b >> 4]);
      out->push_back(kHex[b & 15]);
    }
    pos_ += 16;
    remember(*out);
    return Status();
  } else {
    --pos_;
    return fail("unknown tag " + std::to_string(tag));
  }
  if (size > bytes_.size() - pos_) return fail("string longer than the bytes left");
  out->assign(bytes_.data() + pos_, static_cast<size_t>(size));
  pos_ += static_cast<size_t>(size);
  remember(*out);
  return Status();
}

void ValueUnpacker::remember(const std::string& s) {
  if (is_repeatable(s.size()) && strings_.size() < kMaxRepeatable) strings_.push_back(s);
}

namespace {

void sql_pack_json(sqlite3_context* ctx, int, sqlite3_value** args) {
  if (sqlite3_value_type(args[0]) == SQLITE_TEXT) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(args[0]));
    Result<Value> parsed = parse_json(std::string_view(text, static_cast<size_t>(sqlite3_value_bytes(args[0]))));
    if (parsed.ok()) {
      const std::string packed = pack_value(*parsed);
      if (!packed.empty()) {
        sqlite3_result_blob(ctx, packed.data(), static_cast<int>(packed.size()), SQLITE_TRANSIENT);
        return;
      }
    }
  }
  sqlite3_result_value(ctx, args[0]);
}

void sql_unpack_json(sqlite3_context* ctx, int, sqlite3_value** args) {
  if (sqlite3_value_type(args[0]) == SQLITE_BLOB) {
    const auto* bytes = static_cast<const char*>(sqlite3_value_blob(args[0]));
    Result<Value> value = unpack_value(std::string_view(bytes, static_cast<size_t>(sqlite3_value_bytes(args[0]))));
    if (value.ok()) {
      const std::string json = value->to_json();
      sqlite3_result_text(ctx, json.data(), static_cast<int>(json.size()), SQLITE_TRANSIENT);
      return;
    }
  }
  sqlite3_result_value(ctx, args[0]);
}

void sql_repack(sqlite3_context* ctx, int, sqlite3_value** args) {
  if (sqlite3_value_type(args[0]) == SQLITE_BLOB) {
    const auto* bytes = static_cast<const char*>(sqlite3_value_blob(args[0]));
    Result<Value> value = unpack_value(std::string_view(bytes, static_cast<size_t>(sqlite3_value_bytes(args[0]))));
    if (value.ok()) {
      const std::string packed = pack_value(*value);
      if (!packed.empty()) {
        sqlite3_result_blob(ctx, packed.data(), static_cast<int>(packed.size()), SQLITE_TRANSIENT);
        return;
      }
    }
  }
  sqlite3_result_value(ctx, args[0]);
}

}  // namespace

void register_packed_value_functions(Connection& conn) {
  for (auto [name, fn] : {std::pair{"orch_pack_json", &sql_pack_json}, std::pair{"orch_unpack_json", &sql_unpack_json},
                            std::pair{"orch_repack", &sql_repack}}) {
    sqlite3_create_function_v2(conn.db().getHandle(), name, 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                               nullptr, fn, nullptr, nullptr, nullptr);
  }
}

std::string pack_value(const Value& value) {
  std::string out;
  ValuePacker packer(&out);
  if (!packer.pack(value)) return std::string();
  return out;
}

Result<Value> unpack_value(std::string_view bytes) {
  ValueUnpacker reader(bytes);
  Value value;
  ORCH_RETURN_IF_ERROR(reader.unpack(&value));
  if (!reader.at_end()) return Status::invalid_argument("packed value: bytes after its end");
  return value;
}

}  // namespace orch::sqlite
