// SPDX-License-Identifier: MIT
// Workflow definitions stored once per content (see sqlite_definitions.h).
#include "store/sqlite/sqlite_definitions.h"

#include <sqlite3.h>

namespace orch::sqlite {

int64_t definition_hash(const char* text, size_t size) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) {
    h ^= static_cast<unsigned char>(text[i]);
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h);
}

EncodedDefinition encode_definition(const Value& workflow) {
  EncodedDefinition out;
  out.json = workflow.to_json();
  out.hash = definition_hash(out.json.data(), out.json.size());
  return out;
}

namespace {

void sql_definition_hash(sqlite3_context* ctx, int, sqlite3_value** args) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(args[0]));
  const int size = sqlite3_value_bytes(args[0]);
  sqlite3_result_int64(ctx, text == nullptr ? definition_hash("", 0) : definition_hash(text, static_cast<size_t>(size)));
}

}  // namespace

void register_definition_hash(Connection& conn) {
  sqlite3_create_function_v2(conn.db().getHandle(), "orch_definition_hash", 1,
                             SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr, &sql_definition_hash,
                             nullptr, nullptr, nullptr);
}

int64_t store_definition(Connection& conn, const EncodedDefinition& definition) {
  {
    Query find(conn, "SELECT pk FROM definitions WHERE hash = ?1 AND body = ?2");
    find->bind(1, definition.hash);
    find->bindNoCopy(2, definition.json);
    if (find->executeStep()) return find->getColumn(0).getInt64();
  }
  Query insert(conn, "INSERT INTO definitions (hash, body) VALUES (?1, ?2) RETURNING pk");
  insert->bind(1, definition.hash);
  insert->bindNoCopy(2, definition.json);
  insert->executeStep();
  return insert->getColumn(0).getInt64();
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case too: it would not read back the same
}

bool is_dash_at(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

void sql_compact_id(sqlite3_context* ctx, int, sqlite3_value** args) {
  if (sqlite3_value_type(args[0]) == SQLITE_TEXT) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(args[0]));
    const std::string id(text, static_cast<size_t>(sqlite3_value_bytes(args[0])));
    if (std::optional<std::string> bytes = compact_id(id)) {
      sqlite3_result_blob(ctx, bytes->data(), static_cast<int>(bytes->size()), SQLITE_TRANSIENT);
      return;
    }
  }
  sqlite3_result_value(ctx, args[0]);
}

}  // namespace

std::optional<std::string> compact_id(const std::string& id) {
  if (id.size() != 36) return std::nullopt;
  std::string out;
  out.reserve(16);
  int high = -1;
  for (size_t i = 0; i < id.size(); ++i) {
    if (is_dash_at(i)) {
      if (id[i] != '-') return std::nullopt;
      continue;
    }
    const int v = hex_value(id[i]);
    if (v < 0) return std::nullopt;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<char>((high << 4) | v));
      high = -1;
    }
  }
  return out;
}

void bind_id(SQLite::Statement& stmt, int index, const std::string& id) {
  if (std::optional<std::string> bytes = compact_id(id)) {
    stmt.bind(index, bytes->data(), static_cast<int>(bytes->size()));  // copied by SQLite
  } else {
    stmt.bind(index, id);
  }
}

std::string read_id(const SQLite::Statement& stmt, int index) {
  SQLite::Column col = stmt.getColumn(index);
  if (!col.isBlob() || col.getBytes() != 16) return col.getString();
  static const char kHex[] = "0123456789abcdef";
  const auto* bytes = static_cast<const unsigned char*>(col.getBlob());
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (out.size() == 8 || out.size() == 13 || out.size() == 18 || out.size() == 23) out.push_back('-');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

void register_compact_id(Connection& conn) {
  sqlite3_create_function_v2(conn.db().getHandle(), "orch_compact_id", 1,
                             SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr, &sql_compact_id, nullptr,
                             nullptr, nullptr);
}

void drop_definition_if_unused(Connection& conn, int64_t pk) {
  Query drop(conn,
             "DELETE FROM definitions WHERE pk = ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE definition_pk = ?1)");
  drop->bind(1, pk);
  drop->exec();
}

}  // namespace orch::sqlite
