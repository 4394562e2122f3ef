// SPDX-License-Identifier: MIT
//
// run_guarded: keeps exceptions inside a thread. An exception that leaves a
// thread's function calls std::terminate and takes the whole process down, so
// every background thread of orch (and of `orch serve`) runs each piece of
// its work through run_guarded(): an exception is reported on stderr
// ("orch: <where>: unexpected exception: <what>"), counted, and the thread
// goes on with its next piece of work. Hosts may use it for their own
// threads that call into orch.
//
//   std::thread([&] {
//     while (running) orch::run_guarded("my poller", [&] { poll_once(); });
//   });
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <exception>

#include "orch/export.h"

namespace orch {

// Reports (stderr) and counts one exception caught at `where`.
ORCH_EXPORT void report_thread_exception(const char* where, const char* what) noexcept;

// Exceptions reported since the process started.
ORCH_EXPORT uint64_t thread_exceptions() noexcept;

// Runs `body()`; true when it returned normally, false when it threw.
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

}  // namespace orch
