// SPDX-License-Identifier: MIT
// Connections, statement cache, pool and transaction guards of the SQLite store.
#include "store/sqlite/sqlite_connection.h"

#include <sqlite3.h>

#include <utility>

#include "store/sqlite/sqlite_coalescing_vfs.h"

namespace orch::sqlite {

Status status_from_exception(const SQLite::Exception& e, std::string_view context) {
  std::string message = std::string(context) + ": " + e.what();
  // SQLiteCpp may report an extended code; the primary code is its low byte.
  switch (e.getErrorCode() & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::unavailable(std::move(message));
    case SQLITE_FULL:
      return Status::resource_exhausted(std::move(message));
    case SQLITE_CONSTRAINT:
      // Our schema's constraints are uniqueness constraints.
      return Status::already_exists(std::move(message));
    default:
      return Status::internal(std::move(message));
  }
}

// NOMUTEX: a connection is used by one thread at a time (the pool hands it
// out whole), so SQLite need not lock it around every call.
Connection::Connection(const std::string& path, int busy_timeout_ms)
    : db_(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_URI | SQLite::OPEN_NOMUTEX,
          busy_timeout_ms, coalescing_vfs_name()) {}

SQLite::Statement& Connection::statement(std::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    auto stmt = std::make_unique<SQLite::Statement>(db_, std::string(sql));
    std::string_view key = stmt->getQuery();  // lives as long as the statement
    it = statements_.emplace(key, std::move(stmt)).first;
  }
  return *it->second;
}

std::vector<std::string> Connection::full_scans() const {
  std::vector<std::string> out;
  sqlite3* handle = db_.getHandle();
  for (sqlite3_stmt* stmt = sqlite3_next_stmt(handle, nullptr); stmt != nullptr;
       stmt = sqlite3_next_stmt(handle, stmt)) {
    if (sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0) > 0) out.emplace_back(sqlite3_sql(stmt));
  }
  return out;
}

Query::Query(Connection& conn, std::string_view sql) : stmt_(&conn.statement(sql)) {
  stmt_->tryReset();
  stmt_->clearBindings();
}

Query::~Query() { stmt_->tryReset(); }

ConnectionPool::ConnectionPool(std::string path, int busy_timeout_ms, size_t max_idle, bool single,
                               Setup setup)
    : path_(std::move(path)),
      busy_timeout_ms_(busy_timeout_ms),
      max_idle_(max_idle == 0 ? 1 : max_idle),
      single_(single),
      setup_(std::move(setup)) {}

std::unique_ptr<Connection> ConnectionPool::open() {
  auto conn = std::make_unique<Connection>(path_, busy_timeout_ms_);
  if (setup_) setup_(*conn);
  return conn;
}

ConnectionPool::Lease ConnectionPool::acquire() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (single_) returned_.wait(lock, [this] { return !idle_.empty() || open_ == 0; });
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn));
    }
    ++open_;
  }
  // Opening takes a while (file open, PRAGMAs): do it outside the lock.
  try {
    return Lease(this, open());
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    returned_.notify_one();
    throw;
  }
}

ConnectionPool::Lease ConnectionPool::acquire_writer() {
  if (single_) return acquire();  // the one in-memory connection is the database
  {
    std::unique_lock<std::mutex> lock(mu_);
    writer_returned_.wait(lock, [this] { return writer_ != nullptr || !writer_open_; });
    if (writer_) return Lease(this, std::move(writer_), /*writer=*/true);
    writer_open_ = true;
  }
  try {
    return Lease(this, open(), /*writer=*/true);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    writer_open_ = false;
    writer_returned_.notify_one();
    throw;
  }
}

std::vector<std::string> ConnectionPool::full_scans() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out = writer_ ? writer_->full_scans() : std::vector<std::string>();
  for (const auto& conn : idle_) {
    std::vector<std::string> more = conn->full_scans();
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

void ConnectionPool::release(std::unique_ptr<Connection> conn, bool writer) {
  // Transaction guards end what they begin, but a connection whose ROLLBACK
  // failed must not carry its transaction into the next caller's work.
  if (sqlite3_get_autocommit(conn->db().getHandle()) == 0) {
    conn->db().tryExec("ROLLBACK");
    // (The single in-memory connection is the database: it is kept anyway.)
    if (sqlite3_get_autocommit(conn->db().getHandle()) == 0 && !single_) {
      std::lock_guard<std::mutex> lock(mu_);
      if (writer) {
        writer_open_ = false;
        writer_returned_.notify_one();
      } else {
        --open_;
        returned_.notify_one();
      }
      conn.reset();
      return;
    }
  }
  std::unique_ptr<Connection> surplus;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (writer) {
      writer_ = std::move(conn);
      writer_returned_.notify_one();
      return;
    }
    if (idle_.size() < max_idle_ || single_) {
      idle_.push_back(std::move(conn));
    } else {
      surplus = std::move(conn);
      --open_;
    }
  }
  returned_.notify_one();
  // `surplus` closes here, outside the lock.
}

WriteTransaction::WriteTransaction(Connection& conn, std::mutex& writer_mu, bool sync_to_disk)
    : lock_(writer_mu), conn_(conn), sync_to_disk_(sync_to_disk) {
  if (sync_to_disk_) Query(conn_, "PRAGMA synchronous = FULL")->exec();
  try {
    Query(conn_, "BEGIN IMMEDIATE")->exec();
  } catch (...) {
    if (sync_to_disk_) finish("PRAGMA synchronous = NORMAL");
    throw;
  }
  open_ = true;
}

WriteTransaction::~WriteTransaction() {
  if (open_) finish("ROLLBACK");
  if (sync_to_disk_) finish("PRAGMA synchronous = NORMAL");
}

void WriteTransaction::commit() {
  Query(conn_, "COMMIT")->exec();
  open_ = false;
}

void WriteTransaction::finish(const char* sql) noexcept {
  // Best effort: a failed COMMIT may already have ended the transaction, and
  // then ROLLBACK fails harmlessly.
  try {
    Query(conn_, sql)->tryExecuteStep();
  } catch (...) {
  }
  open_ = false;
}

ReadTransaction::ReadTransaction(Connection& conn) : conn_(conn) { Query(conn_, "BEGIN")->exec(); }

ReadTransaction::~ReadTransaction() {
  try {
    Query(conn_, "COMMIT")->tryExecuteStep();
  } catch (...) {
  }
}

}  // namespace orch::sqlite
