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

void drop_definition_if_unused(Connection& conn, int64_t pk) {
  Query drop(conn,
             "DELETE FROM definitions WHERE pk = ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE definition_pk = ?1)");
  drop->bind(1, pk);
  drop->exec();
}

}  // namespace orch::sqlite
