// SPDX-License-Identifier: MIT
//
// Workflow definitions of the SQLite store's runs, stored once per content
// (schema 7). A run row names its definition by `definition_pk`; runs of the
// same workflow version share one `definitions` row instead of each carrying
// a copy (most of a small run's row). Rows are found by a 64-bit FNV-1a hash
// of the definition's JSON text and compared by the text itself, so a hash
// collision only costs a second row. A definition no run names any more is
// deleted with the last run that named it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "orch/status.h"
#include "orch/value.h"
#include "store/sqlite/sqlite_connection.h"

namespace orch::sqlite {

// A definition as stored: its compact JSON text and that text's hash.
struct EncodedDefinition {
  std::string json;
  int64_t hash = 0;
};

EncodedDefinition encode_definition(const Value& workflow);

// The hash encode_definition() stores (FNV-1a, 64 bits, as a signed integer).
int64_t definition_hash(const char* text, size_t size);

// Registers orch_definition_hash(text) on `conn`, for the migration to
// schema 7 (which moves the runs' copies into `definitions`).
void register_definition_hash(Connection& conn);

// The pk of the row holding `definition`, inserted if there is none. Runs
// inside the caller's write transaction. Throws SQLite::Exception.
int64_t store_definition(Connection& conn, const EncodedDefinition& definition);

// Deletes definition `pk` if no run names it any more. Throws SQLite::Exception.
void drop_definition_if_unused(Connection& conn, int64_t pk);

// Checkpoint ids (schema 7): an id in the canonical UUID form (36 characters,
// lowercase hex) is stored as its 16 bytes (a blob), any other id as text.
// A blob never equals a text, so the two cannot be confused.
// The 16 bytes of `id`, or nullopt when it is not a canonical UUID.
std::optional<std::string> compact_id(const std::string& id);
// Binds `id` at `index` as compact_id() stores it.
void bind_id(SQLite::Statement& stmt, int index, const std::string& id);
// An id read back: a 16-byte blob as its UUID text, anything else as text.
std::string read_id(const SQLite::Statement& stmt, int index);
// Registers orch_compact_id(text) on `conn`, for the migration to schema 7.
void register_compact_id(Connection& conn);

}  // namespace orch::sqlite
