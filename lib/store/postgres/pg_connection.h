// SPDX-License-Identifier: MIT
//
// One libpq connection of the PostgreSQL store, with what the store needs on
// top of libpq: statements prepared once per connection, parameters that
// cannot be silently cut (a string holding a NUL byte is refused: libpq's
// text parameters end at the first one), pipelines (several statements sent
// at once, their results read after one round trip), and a client-side
// deadline on every wait, so a server that stops answering fails the call
// with Unavailable instead of hanging it.
//
// Why libpq directly (Debian's libpq-dev 15), not a C++ wrapper: it is the
// server's own client, packaged everywhere PostgreSQL is; its pipeline mode
// (libpq 14+) sends a whole superstep's writes in one round trip, which is
// what a group commit needs; and no second C++ dependency (Debian's libpqxx
// is 6.4, two majors behind) has to be found, built against and shipped.
//
// Not thread-safe: a connection is used by one thread at a time (the pool
// hands it out).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "orch/status.h"

struct pg_conn;
struct pg_result;

namespace orch::postgres {

// A statement's parameters in libpq's text format, $1.. in order.
class Params {
 public:
  Params& text(std::string_view value);
  Params& integer(int64_t value);
  Params& boolean(bool value);
  Params& null();
  // text[] and bigint[] parameters (array literals), for unnest().
  Params& text_array(const std::vector<std::string>& values);
  Params& integer_array(const std::vector<int64_t>& values);

  size_t size() const { return values_.size(); }
  // InvalidArgument when a value holds a NUL byte (PostgreSQL text cannot).
  const Status& status() const { return status_; }
  // For libpq: pointers into this object, null for SQL NULL.
  std::vector<const char*> pointers() const;

 private:
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
  Status status_;
};

// A statement's result; owns the PGresult.
class Rows {
 public:
  Rows() = default;
  explicit Rows(pg_result* result);
  Rows(Rows&&) noexcept;
  Rows& operator=(Rows&&) noexcept;
  ~Rows();

  int count() const;
  // Rows a write changed (INSERT/UPDATE/DELETE), 0 otherwise.
  int64_t affected() const;
  bool is_null(int row, int column) const;
  std::string_view text(int row, int column) const;
  std::string string(int row, int column) const { return std::string(text(row, column)); }
  // Internal naming the column when it does not hold an integer.
  Result<int64_t> integer(int row, int column) const;

 private:
  pg_result* result_ = nullptr;
};

// One statement of a pipeline.
struct Command {
  std::string sql;
  Params params;
};

struct ConnectSettings {
  std::string conninfo;
  int connect_timeout_s = 5;
  int statement_timeout_ms = 30000;
  int lock_timeout_ms = 10000;
  std::string schema;  // '' : the server's default search_path
  // false: the session runs with synchronous_commit = off (a commit that
  // must reach the disk sets it back on for its transaction).
  bool synchronous_commit = true;
};

class Connection {
 public:
  // Connects and applies the session settings (timeouts, search_path).
  // Unavailable when the server cannot be reached; InvalidArgument for a
  // malformed conninfo.
  static Result<std::unique_ptr<Connection>> open(const ConnectSettings& settings);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement (prepared on first use on this connection). A failed
  // statement's Status comes from its SQLSTATE (pg_status.h), prefixed by
  // `what`.
  Result<Rows> exec(const std::string& what, const std::string& sql, const Params& params = Params());
  // Runs statements without parameters as one simple query (BEGIN, COMMIT,
  // SET, DDL: several may be separated by ';').
  Status exec_script(const std::string& what, const std::string& sql);
  // Sends `commands` at once and reads their results (one per command, in
  // order) after a single round trip. Without a BEGIN, the commands are one
  // transaction, committed at the pipeline's end (its sync point); a
  // transaction that goes on after the pipeline starts with BEGIN. When one
  // fails, the ones after it are skipped, the first failure is returned, and
  // the transaction is rolled back.
  Result<std::vector<Rows>> pipeline(const std::string& what, const std::vector<Command>& commands);

  // `name` as a quoted SQL identifier (for a schema name in a statement).
  std::string quote_identifier(const std::string& name) const;

  // The connection is lost or was given up on (a deadline passed): the pool
  // must not hand it out again.
  bool broken() const;
  // Rolls back a transaction a failed call left open (so the pool may reuse
  // the connection). Marks the connection broken when that fails.
  void reset_transaction();

 private:
  explicit Connection(pg_conn* conn, int wait_limit_ms) : conn_(conn), wait_limit_ms_(wait_limit_ms) {}
  // The name of `sql`'s prepared statement on this connection, preparing it.
  Result<std::string> prepared(const std::string& what, const std::string& sql);
  // Sends what libpq has buffered, then waits until a result can be read
  // without blocking; Unavailable (and broken) after wait_limit_ms_.
  Status flush_and_wait(const std::string& what, int64_t deadline_ms);
  // The next result (null at the end of a command's results).
  Result<pg_result*> next_result(const std::string& what, int64_t deadline_ms);
  // Reads and frees the results of a command up to the null that ends them;
  // returns the last one (the command's outcome).
  Result<Rows> finish_command(const std::string& what, int64_t deadline_ms);
  int64_t deadline() const;
  Status give_up(const std::string& what, const std::string& why);

  pg_conn* conn_;
  int wait_limit_ms_;  // <= 0: no client-side deadline
  bool given_up_ = false;
  std::unordered_map<std::string, std::string> statements_;  // sql -> prepared name
};

}  // namespace orch::postgres
