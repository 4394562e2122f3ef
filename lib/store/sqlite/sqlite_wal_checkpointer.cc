// SPDX-License-Identifier: MIT
#include "store/sqlite/sqlite_wal_checkpointer.h"

#include <pthread.h>
#include <sqlite3.h>

#include <algorithm>
#include <limits>

namespace orch::sqlite {

namespace {

// How long the finishing checkpoint waits for readers to leave the log while
// this process's writers wait for it.
constexpr int kFinishWaitMs = 50;

}  // namespace

WalCheckpointer::WalCheckpointer(std::string path, int busy_timeout_ms, int64_t log_bytes, std::mutex* writer_mu)
    : path_(std::move(path)),
      busy_timeout_ms_(busy_timeout_ms),
      log_bytes_(log_bytes),
      frames_(frames_for(log_bytes, 4096)),
      writer_mu_(writer_mu),
      thread_([this] { run(); }) {}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

int WalCheckpointer::frames_for(int64_t log_bytes, int page_size) {
  const int64_t frames = log_bytes / std::max(512, page_size);
  return static_cast<int>(std::clamp<int64_t>(frames, 1, std::numeric_limits<int>::max() / 4));
}

void WalCheckpointer::attach(Connection& conn) {
  const int page_size = conn.db().execAndGet("PRAGMA page_size").getInt();
  frames_.store(frames_for(log_bytes_, page_size), std::memory_order_relaxed);
  // Replaces SQLite's own auto-checkpoint hook on this connection.
  sqlite3_wal_hook(conn.db().getHandle(), &WalCheckpointer::on_commit, this);
}

int WalCheckpointer::on_commit(void* self, sqlite3* db, const char* name, int frames) {
  auto* checkpointer = static_cast<WalCheckpointer*>(self);
  const int threshold = checkpointer->frames_.load(std::memory_order_relaxed);
  if (frames < threshold) return SQLITE_OK;
  // A checkpoint copies only the frames no reader still needs, and the log
  // starts over only once all are copied. Until then every commit would ask
  // again (a checkpoint, with two fsyncs, per commit): ask again only once
  // the log has grown by another step. Small steps keep each checkpoint's
  // fsync short (at 16000 pages, a step of a quarter of that measured twice
  // the p99 commit latency of a 250-page step under load).
  const int step = std::max(64, threshold / 64);
  const int asked = checkpointer->asked_at_.load(std::memory_order_relaxed);
  if (asked >= 0 && frames >= asked && frames < asked + step) return SQLITE_OK;
  checkpointer->asked_at_.store(frames, std::memory_order_relaxed);
  if (frames >= 4 * threshold) {
    // The thread is far behind (or a reader holds the log): do what SQLite would.
    checkpointer->checkpoints_.fetch_add(1, std::memory_order_relaxed);
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else {
    {
      std::lock_guard<std::mutex> lock(checkpointer->mu_);
      checkpointer->requested_ = true;
    }
    checkpointer->wake_.notify_one();
  }
  return SQLITE_OK;
}

void WalCheckpointer::run() {
  pthread_setname_np(pthread_self(), "orch-wal");  // as `top -H` shows it
  std::unique_ptr<Connection> conn;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return requested_ || stopping_; });
    if (stopping_) return;
    requested_ = false;
    lock.unlock();
    try {
      if (!conn) {
        conn = std::make_unique<Connection>(path_, busy_timeout_ms_);
        // A connection learns that the file is in WAL mode, and opens the
        // log, only when it first reads. Before that, SQLite 3.40's
        // checkpoint call returns OK having done nothing (log size -1).
        conn->db().exec("SELECT count(*) FROM sqlite_schema");
      }
      checkpoints_.fetch_add(1, std::memory_order_relaxed);
      sqlite3* db = conn->db().getHandle();
      // The bulk of the log, beside the writers.
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      // The rest with the writers held, so the log can start over.
      std::lock_guard<std::mutex> writers(*writer_mu_);
      sqlite3_busy_timeout(db, kFinishWaitMs);
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
      sqlite3_busy_timeout(db, busy_timeout_ms_);
    } catch (const std::exception&) {
      conn.reset();  // try again with a fresh connection next time
    } catch (...) {
      conn.reset();  // nothing else may end the thread (std::terminate)
    }
    lock.lock();
  }
}

}  // namespace orch::sqlite
