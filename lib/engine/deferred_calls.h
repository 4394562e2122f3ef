// SPDX-License-Identifier: MIT
//
// DeferredCalls: worker calls that the engine starts while it handles a reply
// (under the run's lock) on a thread that opened a scope, an HTTP call thread
// say, are sent from that thread once the scope ends, instead of being handed
// to the engine's pool. A reply on a call thread then goes on to send the
// next call itself: two thread wake-ups fewer per node. Open a scope only
// where nothing is locked when it ends and sending may block a little (it
// enqueues on the call pool).
//
// Scopes nest: only the outermost one on a thread sends, in order, after its
// body; calls made while it sends (a dispatcher that answers at once, say)
// join its queue rather than deepening the stack.
//
// Thread-safety: per thread; a scope must be destroyed on the thread that
// made it, holding no run lock.
#pragma once

#include <deque>
#include <functional>

namespace orch::internal {

class DeferredCalls {
 public:
  DeferredCalls();
  ~DeferredCalls();
  DeferredCalls(const DeferredCalls&) = delete;
  DeferredCalls& operator=(const DeferredCalls&) = delete;

  // Queues `call` when a scope is open on this thread; false when none is
  // (the caller sends it some other way).
  static bool defer(std::function<void()>& call);

 private:
  std::deque<std::function<void()>> calls_;
  bool outermost_ = false;
};

}  // namespace orch::internal
