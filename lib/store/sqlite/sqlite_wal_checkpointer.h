// SPDX-License-Identifier: MIT
//
// WalCheckpointer: moves SQLite's WAL checkpoints (copying the log back into
// the database file, with its fsyncs) off the committing threads. SQLite
// normally runs them inside whichever commit pushes the log past 1000 pages,
// so every ~80th superstep paid for two fsyncs while holding the writer lock.
//
// attach() installs a commit hook on a connection; when a commit leaves the
// log holding `log_bytes` of pages or more (`frames`: that many bytes in
// pages of the file's page size, which attach() reads), the checkpointer's own thread runs a PASSIVE
// checkpoint (which never blocks writers). While a reader still needs some of
// the log, a checkpoint cannot copy all of it and the log keeps growing; the
// next checkpoint is then asked for once it has grown by another 1/64 of
// `frames`, at least 64 pages (not at every commit). A log that grows to four times
// that (the thread is behind, or a reader holds the log) is checkpointed by
// the committing thread, as SQLite would. A checkpoint's fsyncs still stall
// the commits that meet them, so fewer, larger checkpoints (a higher `frames`)
// stall fewer commits.
//
// The log starts over (and, with PRAGMA journal_size_limit, its file shrinks
// back) only when a commit finds all of it copied and no reader still in it.
// Under steady load a passive checkpoint never gets there: commits keep
// adding frames while it copies, and the log grew to the 4x fallback and
// stayed that size. So after the passive copy the thread takes the store's
// writer mutex (`writer_mu`: no commit of this process meanwhile), copies
// the few frames committed during the first copy and waits briefly
// (kFinishWaitMs) for readers to leave the log (a RESTART checkpoint); the
// next commit then starts the log over.
//
// Thread-safety: attach() and the hook may be called from any thread. The
// destructor stops and joins the thread; connections must not commit after it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "store/sqlite/sqlite_connection.h"

namespace orch::sqlite {

class WalCheckpointer {
 public:
  // `writer_mu` must outlive the checkpointer.
  WalCheckpointer(std::string path, int busy_timeout_ms, int64_t log_bytes, std::mutex* writer_mu);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Every connection of the store comes here once; all of them see the same
  // file, so the page size read from any of them sets `frames`.
  void attach(Connection& conn);
  // The threshold in frames for a file of `page_size` bytes per page.
  static int frames_for(int64_t log_bytes, int page_size);
  // Checkpoints started so far (on the thread or by a committing thread).
  int64_t checkpoints_run() const { return checkpoints_.load(std::memory_order_relaxed); }

 private:
  static int on_commit(void* self, sqlite3* db, const char* name, int frames);
  void run();

  const std::string path_;
  const int busy_timeout_ms_;
  const int64_t log_bytes_;
  std::atomic<int> frames_;
  std::mutex* const writer_mu_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool requested_ = false;
  bool stopping_ = false;
  std::atomic<int> asked_at_{-1};  // the log's size when a checkpoint was last asked for (-1: never)
  std::atomic<int64_t> checkpoints_{0};
  std::thread thread_;
};

}  // namespace orch::sqlite
