// SPDX-License-Identifier: MIT
#include "guarded.h"

#include <atomic>
#include <cstdio>

namespace orch::server {
namespace {
std::atomic<uint64_t> g_caught{0};
}  // namespace

void note_background_exception(const char* where, const char* what) noexcept {
  g_caught.fetch_add(1, std::memory_order_relaxed);
  // stdio, not iostream: it cannot throw.
  std::fprintf(stderr, "orch: %s: unexpected exception: %s\n", where, what ? what : "");
}

uint64_t background_exceptions() noexcept { return g_caught.load(std::memory_order_relaxed); }

}  // namespace orch::server
