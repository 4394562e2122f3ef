// SPDX-License-Identifier: MIT
//
// guarded(): the loop body of every server background thread (callback
// sender, retention sweeper, tracker, workflow directory watcher, agent output
// drain) runs through it. An exception that left a thread's function would
// call std::terminate and end the server; here it is logged on stderr,
// counted (orch_background_exceptions_total in /metrics), and the thread goes
// on with its next piece of work.
//
// Thread-safety: may be called from any thread.
#pragma once

#include <cstdint>
#include <exception>

namespace orch::server {

// Logs and counts one exception caught at `where`.
void note_background_exception(const char* where, const char* what) noexcept;

// Exceptions caught by guarded() since the process started.
uint64_t background_exceptions() noexcept;

// Runs `body()`; true when it returned normally.
template <typename Body>
bool guarded(const char* where, Body&& body) noexcept {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    note_background_exception(where, e.what());
  } catch (...) {
    note_background_exception(where, "an exception not derived from std::exception");
  }
  return false;
}

}  // namespace orch::server
