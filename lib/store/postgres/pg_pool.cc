// SPDX-License-Identifier: MIT
// The PostgreSQL store's bounded connection pool (see pg_pool.h).
#include "store/postgres/pg_pool.h"

#include <chrono>

namespace orch::postgres {

ConnectionPool::ConnectionPool(ConnectSettings settings, size_t max_connections, int acquire_timeout_ms)
    : settings_(std::move(settings)),
      max_connections_(max_connections > 0 ? max_connections : 1),
      acquire_timeout_ms_(acquire_timeout_ms) {}

Result<ConnectionPool::Lease> ConnectionPool::acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(acquire_timeout_ms_);
  for (;;) {
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn));
    }
    if (open_ < max_connections_) break;
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= max_connections_) {
      return Status::unavailable("all " + std::to_string(max_connections_) +
                                 " PostgreSQL connections stayed busy for " + std::to_string(acquire_timeout_ms_) +
                                 " ms (PostgresStoreOptions::max_connections)");
    }
  }
  // Connect outside the lock: it may take up to connect_timeout_s.
  ++open_;
  lock.unlock();
  Result<std::unique_ptr<Connection>> conn = Connection::open(settings_);
  if (!conn.ok()) {
    lock.lock();
    --open_;
    returned_.notify_one();
    return conn.status();
  }
  return Lease(this, std::move(conn).value());
}

void ConnectionPool::release(std::unique_ptr<Connection> conn) {
  conn->reset_transaction();
  std::vector<std::unique_ptr<Connection>> closing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (conn->broken()) {
      closing.push_back(std::move(conn));
      for (auto& idle : idle_) closing.push_back(std::move(idle));
      idle_.clear();
      open_ -= closing.size();
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  // One connection came back: one waiter can use it. Waking them all (with
  // 100 runs in flight, ~90 threads wait here) cost a thread switch per
  // waiter per commit, and most went straight back to sleep. A waiter that
  // wakes and finds the connection taken by a caller that came in meanwhile
  // waits again; the next release wakes it. Closed connections make room
  // for as many new ones: everyone may try.
  if (closing.empty()) {
    returned_.notify_one();
  } else {
    returned_.notify_all();
  }
  // `closing` is closed here, outside the lock.
}

}  // namespace orch::postgres
