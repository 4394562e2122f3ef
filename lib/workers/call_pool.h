// SPDX-License-Identifier: MIT
//
// CallPool: threads for blocking calls (HTTP requests to workers), started on
// demand up to a bound. Tasks beyond the bound wait in FIFO order.
//
// Destruction stops new threads, lets every queued task run (tasks are
// expected to see their own shutdown flag and return quickly) and joins the
// threads. It may run on one of the pool's own threads (the last owner of the
// pool can be a task): that thread is detached instead of joined and exits
// after its task without touching the destroyed pool.
//
// A task posted from inside one of the pool's tasks while no other task
// waits runs next on that same thread, once the posting task returns (a reply
// handler that sends the next call keeps its thread instead of waking one).
//
// Thread-safety: post() may be called from any thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "orch/export.h"

namespace orch::internal {

class ORCH_EXPORT CallPool {  // exported for orch::http_workers (not public API)
 public:
  explicit CallPool(size_t max_threads);
  ~CallPool();
  CallPool(const CallPool&) = delete;
  CallPool& operator=(const CallPool&) = delete;

  void post(std::function<void()> task);

  // Threads started so far.
  size_t threads() const;

 private:
  struct State;
  static void run_tasks(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace orch::internal
