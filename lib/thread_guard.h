// SPDX-License-Identifier: MIT
//
// Keeps exceptions inside orch's own threads. An exception that leaves a
// thread's function calls std::terminate and takes the host process down, so
// every loop body of a background thread (and every callback orch hands to C
// code such as libmosquitto) runs through run_guarded(): an exception is
// reported on stderr ("orch: <where>: unexpected exception: <what>"),
// counted, and the thread goes on with its next piece of work.
//
// Thread-safety: may be called from any thread.
#pragma once

#include <cstdint>
#include <exception>

namespace orch::internal {

// Reports and counts one exception caught at `where`.
void report_thread_exception(const char* where, const char* what) noexcept;

// Exceptions caught by run_guarded() since the process started (for tests).
uint64_t thread_exceptions() noexcept;

// Runs `body()`; true when it returned normally.
template <typename Body>
bool run_guarded(const char* where, Body&& body) noexcept {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    report_thread_exception(where, e.what());
  } catch (...) {
    report_thread_exception(where, "an exception not derived from std::exception");
  }
  return false;
}

}  // namespace orch::internal
