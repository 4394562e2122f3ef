// SPDX-License-Identifier: MIT
//
// Crash attribution (EngineOptions::crash_log_path): which run was the
// process executing when it crashed?
//
// Engine threads name the run they work on (CurrentRun, a thread-local
// buffer). install_crash_guard() adds handlers for the fatal signals (SIGSEGV,
// SIGBUS, SIGFPE, SIGILL, SIGABRT) that append the crashing thread's run id to
// a log file and then hand the signal on to whatever handled it before (the
// default action, a sanitizer). On the next start, recover() reads the log
// (take_crash_log) and counts a resume against those runs only, so a run that
// crashes the process is failed after a few restarts, while runs that were
// merely in flight when the process was killed (SIGKILL, power loss) are not.
//
// Thread-safety: CurrentRun is per thread; install_crash_guard is called once
// per process (later calls change the log file); take_crash_log by one thread.
#pragma once

#include <string>
#include <vector>

#include "orch/status.h"

namespace orch::internal {

// While alive, the calling thread works on `run_id` (nests: the outer name
// comes back when it ends).
class CurrentRun {
 public:
  explicit CurrentRun(const std::string& run_id);
  ~CurrentRun();
  CurrentRun(const CurrentRun&) = delete;
  CurrentRun& operator=(const CurrentRun&) = delete;

 private:
  // The outer run id (crash_guard.cc keeps up to 300 bytes) and its length:
  // only that much is copied out and back (a UUID is 36 bytes; copying all
  // 300 both ways was a third of what a send item's call cost).
  char saved_[300];
  size_t saved_size_ = 0;
};

// Opens (creating, 0600) the log and installs the handlers.
Status install_crash_guard(const std::string& log_path);

// The run ids the log names (each once), and empties it. A missing file is
// an empty log.
std::vector<std::string> take_crash_log(const std::string& log_path);

}  // namespace orch::internal
