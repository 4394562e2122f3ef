// SPDX-License-Identifier: MIT
//
// WalCheckpointer: moves SQLite's WAL checkpoints (copying the log back into
// the database file, with its fsyncs) off the committing threads. SQLite
// normally runs them inside whichever commit pushes the log past 1000 pages,
// so every ~80th superstep paid for two fsyncs while holding the writer lock.
//
// attach() installs a commit hook on a connection; when a commit leaves the
// log at or above `frames` pages, the checkpointer's own thread runs a PASSIVE
// checkpoint (which never blocks writers). A log that grows to four times
// that (the thread is behind, or a reader holds the log) is checkpointed by
// the committing thread, as SQLite would. A checkpoint's fsyncs still stall
// the commits that meet them, so fewer, larger checkpoints (a higher `frames`)
// stall fewer commits.
//
// Thread-safety: attach() and the hook may be called from any thread. The
// destructor stops and joins the thread; connections must not commit after it.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "sqlite_connection.h"

namespace orch::sqlite {

class WalCheckpointer {
 public:
  WalCheckpointer(std::string path, int busy_timeout_ms, int frames);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  void attach(Connection& conn);

 private:
  static int on_commit(void* self, sqlite3* db, const char* name, int frames);
  void run();

  const std::string path_;
  const int busy_timeout_ms_;
  const int frames_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool requested_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace orch::sqlite
