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
//
// Stateless functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

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

// Registers on `conn` orch_pack_json(text), the packed form of a JSON
// document (for migration 9), and orch_unpack_json(blob), its JSON text (for
// tests that turn a file back into an older schema). Anything else, and text
// or bytes that do not parse, come back unchanged.
void register_packed_value_functions(Connection& conn);

}  // namespace orch::sqlite
