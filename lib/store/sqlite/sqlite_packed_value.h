// SPDX-License-Identifier: MIT
//
// A compact binary form of a Value for the SQLite store's event data (schema
// 9): what JSON text spends on quotes, key names and UUIDs in their 36
// characters is a quarter to half of an engine event. A packed value is a
// BLOB; JSON text stays readable beside it (rows written before schema 9).
//
// The form is exact: unpack(pack(v)) == v, types included (an int stays an
// int, a double its 8 bytes, members in their order). Strings the engine
// repeats (its event keys, node types) are one byte, from a fixed dictionary
// that is append-only; a string that is a lower-case UUID is 17 bytes.
// Since schema 10 a string of 4 to 64 bytes met before in the same packing
// is 2 bytes (a back-reference): a step's id and node name recur in the
// events of a superstep, a node's name in the paths of a checkpoint delta.
//
// pack_value/unpack_value are stateless and thread-safe; a ValuePacker or
// ValueUnpacker is used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "orch/status.h"
#include "orch/value.h"
#include "store/sqlite/sqlite_connection.h"

namespace orch::sqlite {

// The packed bytes of `value`; '' (never a packed value) when it nests deeper
// than unpack_value() reads, which the caller then stores as JSON text.
std::string pack_value(const Value& value);

// The value packed in `bytes`. Hostile bytes (truncated, unknown tags, nesting
// deeper than a JSON document may be, counts larger than the bytes left)
// give InvalidArgument, never a crash or an allocation beyond the input's size.
Result<Value> unpack_value(std::string_view bytes);

// Packs several values into one buffer, one after another, later ones
// referring back to strings of earlier ones (read back by one ValueUnpacker,
// in the same order). The values packed must stay alive and unchanged while
// the packer is used: it remembers views of their strings.
class ValuePacker {
 public:
  explicit ValuePacker(std::string* out);  // appends to *out, which must outlive the packer
  // False when `value` nests deeper than unpack_value() reads; *out then holds
  // a partial value and the packing is unusable.
  bool pack(const Value& value);

 private:
  static constexpr size_t kSlots = 512;  // twice the table's cap, a power of two
  static uint32_t hash(std::string_view s);
  void put_string(const std::string& s);
  bool put_value(const Value& v, int depth);

  std::string* out_;
  std::vector<std::string_view> strings_;  // the strings a back-reference can name, in order
  std::vector<uint16_t> slots_;            // hash of a string -> its index + 1 (0: free); sized on first use
};

// Reads the values of one packing in order. Hostile bytes give InvalidArgument.
class ValueUnpacker {
 public:
  explicit ValueUnpacker(std::string_view bytes);  // the bytes must outlive the unpacker
  Status unpack(Value* out);
  bool at_end() const { return pos_ == bytes_.size(); }
  // Framing between values (see put_varint): false when truncated.
  bool read_byte(unsigned char* b);
  bool read_varint(uint64_t* v);

 private:
  Status read_value(Value* out, int depth);
  Status read_string(std::string* out);
  Status read_count(uint64_t* count);
  Status fail(const std::string& why) const;
  void remember(const std::string& s);

  std::string_view bytes_;
  size_t pos_ = 0;
  std::vector<std::string> strings_;
};

// Appends `v` as a varint (7 bits a byte, low first), for framing values.
void put_varint(std::string* out, uint64_t v);

// Registers on `conn` orch_pack_json(text), the packed form of a JSON
// document (for migration 9), orch_unpack_json(blob), its JSON text (for
// tests that turn a file back into an older schema), and orch_repack(blob),
// a packed value packed again (migration 10 gives values written before it
// their back-references). Anything else, and text or bytes that do not
// parse, come back unchanged.
void register_packed_value_functions(Connection& conn);

}  // namespace orch::sqlite
