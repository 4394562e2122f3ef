// SPDX-License-Identifier: MIT
//
// The PostgreSQL store's connections: at most max_connections, opened when
// needed and kept for reuse. A connection that broke (lost, timed out) is
// closed when it comes back, and so are the idle ones, which a restarted or
// unreachable server has most likely broken too: the next calls reconnect.
//
// Thread-safety: acquire() may be called from any thread; a Lease is used by
// one thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "store/postgres/pg_connection.h"

namespace orch::postgres {

class ConnectionPool {
 public:
  ConnectionPool(ConnectSettings settings, size_t max_connections, int acquire_timeout_ms);

  // A borrowed connection, returned to the pool when destroyed. A transaction
  // a failed call left open is rolled back first.
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_) pool_->release(std::move(conn_));
    }
    Connection& operator*() const { return *conn_; }
    Connection* operator->() const { return conn_.get(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  // An idle connection, a new one while fewer than max_connections are open,
  // or the first one returned within acquire_timeout_ms (else Unavailable).
  Result<Lease> acquire();

 private:
  void release(std::unique_ptr<Connection> conn);

  const ConnectSettings settings_;
  const size_t max_connections_;
  const int acquire_timeout_ms_;
  std::mutex mu_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<Connection>> idle_;
  size_t open_ = 0;  // idle and leased
};

}  // namespace orch::postgres
