// SPDX-License-Identifier: MIT
//
// SQLite plumbing for the SQLite store: a connection with its cache of
// prepared statements, a pool of connections, transaction guards, and the
// mapping of SQLite errors to Status. Internal: SQLiteCpp types never reach
// include/orch.
//
// Thread-safety: a Connection is used by one thread at a time (the pool hands
// each out exclusively); ConnectionPool is thread-safe.
#pragma once

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "orch/status.h"

namespace orch::sqlite {

// Maps a SQLite failure to the Store error contract: busy/locked become
// Unavailable (the caller may retry), a full disk ResourceExhausted, a
// uniqueness violation AlreadyExists, anything else Internal. `context` names the operation.
Status status_from_exception(const SQLite::Exception& e, std::string_view context);

class Connection {
 public:
  // Opens `path` read-write, creating it if missing. Throws SQLite::Exception.
  Connection(const std::string& path, int busy_timeout_ms);

  SQLite::Database& db() { return db_; }

  // The prepared statement for `sql`, compiled on first use and kept, so hot
  // paths never re-prepare. Use it through a Query, which resets it after.
  SQLite::Statement& statement(std::string_view sql);

  // For tests: the SQL of each prepared statement that has stepped through a
  // table or index in full (not by a key) since it was prepared.
  std::vector<std::string> full_scans() const;

 private:
  SQLite::Database db_;
  // Keyed by each statement's own SQL text (a view into the statement).
  std::unordered_map<std::string_view, std::unique_ptr<SQLite::Statement>> statements_;
};

// One use of a cached statement: starts from a reset statement with no
// bindings and resets it on scope exit, so a half-read SELECT never keeps a
// read transaction open.
class Query {
 public:
  Query(Connection& conn, std::string_view sql);
  ~Query();
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  SQLite::Statement& operator*() { return *stmt_; }
  SQLite::Statement* operator->() { return stmt_; }

 private:
  SQLite::Statement* stmt_;
};

// Hands out connections, one thread at a time each. Connections beyond
// `max_idle` are closed when returned. With `single` (":memory:", whose data
// lives in its one connection) callers wait for the single connection.
class ConnectionPool {
 public:
  using Setup = std::function<void(Connection&)>;
  ConnectionPool(std::string path, int busy_timeout_ms, size_t max_idle, bool single, Setup setup);

  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<Connection> conn, bool writer = false)
        : pool_(pool), conn_(std::move(conn)), writer_(writer) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_) pool_->release(std::move(conn_), writer_);
    }
    Connection& operator*() { return *conn_; }
    Connection* operator->() { return conn_.get(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<Connection> conn_;
    bool writer_ = false;
  };

  // Throws SQLite::Exception when a new connection cannot be opened.
  Lease acquire();
  // For writes: the pool's one writer connection, waiting while another
  // write has it. SQLite empties a connection's page cache whenever another
  // connection has committed, so writes kept on one connection find their
  // pages cached (writes queue on the store's writer mutex anyway). Not
  // reentrant: a thread holding the writer must not ask for it again.
  Lease acquire_writer();

  // For tests: Connection::full_scans() of the connections in the pool now.
  std::vector<std::string> full_scans();

 private:
  void release(std::unique_ptr<Connection> conn, bool writer);
  std::unique_ptr<Connection> open();

  const std::string path_;
  const int busy_timeout_ms_;
  const size_t max_idle_;
  const bool single_;
  const Setup setup_;
  std::mutex mu_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<Connection>> idle_;
  size_t open_ = 0;
  std::unique_ptr<Connection> writer_;  // the writer connection while it is free
  bool writer_open_ = false;            // the writer connection exists
  std::condition_variable writer_returned_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back unless commit() ran. Holds
// `writer_mu` for its lifetime: writers of this process queue on the mutex
// (a prompt hand-over) instead of polling in SQLite's busy handler; other
// processes are still kept out by SQLite's own lock. With `sync_to_disk` the
// commit runs with synchronous=FULL (the WAL is fsynced), else NORMAL.
// Throws SQLite::Exception.
class WriteTransaction {
 public:
  WriteTransaction(Connection& conn, std::mutex& writer_mu, bool sync_to_disk = false);
  ~WriteTransaction();
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;

  void commit();

 private:
  void finish(const char* sql) noexcept;

  std::unique_lock<std::mutex> lock_;
  Connection& conn_;
  const bool sync_to_disk_;
  bool open_ = false;
};

// BEGIN (deferred) ... COMMIT around several reads, so they see one snapshot
// of the database. Never blocks writers (WAL). Throws SQLite::Exception.
class ReadTransaction {
 public:
  explicit ReadTransaction(Connection& conn);
  ~ReadTransaction();
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  Connection& conn_;
};

}  // namespace orch::sqlite
