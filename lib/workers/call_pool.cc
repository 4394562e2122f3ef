// SPDX-License-Identifier: MIT
#include "workers/call_pool.h"
#include "orch/thread_guard.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace orch::internal {

namespace {
// The pool whose task this thread is running, and the task it will run next
// without a hand-off (see post()).
thread_local const void* t_running_pool = nullptr;
thread_local std::function<void()>* t_next_task = nullptr;
}  // namespace

struct CallPool::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  std::vector<std::thread> threads;
  size_t idle = 0;
  size_t max_threads = 1;
  bool stopping = false;
};

// Runs tasks until the pool stops and the queue is empty. Holds the state, not
// the pool, so it may outlive a pool destroyed from inside a task.
void CallPool::run_tasks(std::shared_ptr<State> state) {
  std::unique_lock<std::mutex> lock(state->mu);
  for (;;) {
    while (state->tasks.empty() && !state->stopping) {
      ++state->idle;
      state->cv.wait(lock);
      --state->idle;
    }
    if (state->tasks.empty()) return;  // stopping, nothing left
    std::function<void()> task = std::move(state->tasks.front());
    state->tasks.pop_front();
    lock.unlock();
    std::function<void()> next;
    t_running_pool = state.get();
    t_next_task = &next;
    for (;;) {
      // A task must not throw; never let it take the process down.
      run_guarded("call pool task", task);
      task = nullptr;  // its captures go before the next task starts
      if (!next) break;
      task = std::move(next);
      next = nullptr;
    }
    t_running_pool = nullptr;
    t_next_task = nullptr;
    lock.lock();
  }
}

CallPool::CallPool(size_t max_threads) : state_(std::make_shared<State>()) {
  state_->max_threads = std::max<size_t>(1, max_threads);
}

CallPool::~CallPool() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
    threads.swap(state_->threads);
  }
  state_->cv.notify_all();
  bool on_pool_thread = false;
  for (std::thread& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      on_pool_thread = true;
      t.detach();
    } else {
      t.join();
    }
  }
  // Destroyed from inside a task: this thread will not come back for the
  // queue, and the queued tasks may use what is being destroyed. Run them now.
  if (on_pool_thread) {
    std::unique_lock<std::mutex> lock(state_->mu);
    while (!state_->tasks.empty()) {
      std::function<void()> task = std::move(state_->tasks.front());
      state_->tasks.pop_front();
      lock.unlock();
      run_guarded("call pool task", task);
      task = nullptr;
      lock.lock();
    }
  }
}

void CallPool::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    // Posted by one of our tasks with nothing else waiting: this thread runs it
    // as soon as its task returns, sparing another thread's wake-up.
    if (t_running_pool == state_.get() && !*t_next_task && state_->tasks.empty() && !state_->stopping) {
      *t_next_task = std::move(task);
      return;
    }
    state_->tasks.push_back(std::move(task));
    if (state_->tasks.size() > state_->idle && state_->threads.size() < state_->max_threads && !state_->stopping) {
      state_->threads.emplace_back(run_tasks, state_);
      return;
    }
  }
  // After the unlock: the woken thread does not wait for the mutex first.
  state_->cv.notify_one();
}

size_t CallPool::threads() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->threads.size();
}

}  // namespace orch::internal
