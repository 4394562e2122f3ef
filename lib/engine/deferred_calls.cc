// SPDX-License-Identifier: MIT
#include "engine/deferred_calls.h"

namespace orch::internal {
namespace {
thread_local std::deque<std::function<void()>>* t_calls = nullptr;
}  // namespace

DeferredCalls::DeferredCalls() {
  if (t_calls == nullptr) {
    t_calls = &calls_;
    outermost_ = true;
  }
}

DeferredCalls::~DeferredCalls() {
  if (!outermost_) return;
  while (!calls_.empty()) {
    std::function<void()> call = std::move(calls_.front());
    calls_.pop_front();
    try {
      call();
    } catch (...) {
      // Sending a call does not throw; never let one take the thread down.
    }
  }
  t_calls = nullptr;
}

bool DeferredCalls::defer(std::function<void()>& call) {
  if (t_calls == nullptr) return false;
  t_calls->push_back(std::move(call));
  return true;
}

}  // namespace orch::internal
