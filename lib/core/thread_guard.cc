// SPDX-License-Identifier: MIT
#include "orch/thread_guard.h"

#include <atomic>
#include <cstdio>

namespace orch {
namespace {
std::atomic<uint64_t> g_caught{0};
}  // namespace

void report_thread_exception(const char* where, const char* what) noexcept {
  g_caught.fetch_add(1, std::memory_order_relaxed);
  // stdio, not iostream: it cannot throw, and this may run while a thread unwinds.
  std::fprintf(stderr, "orch: %s: unexpected exception: %s\n", where, what ? what : "");
}

uint64_t thread_exceptions() noexcept { return g_caught.load(std::memory_order_relaxed); }

}  // namespace orch
