// SPDX-License-Identifier: MIT
#include "orch/clock.h"
#include "orch/thread_guard.h"

#include <condition_variable>
#include <thread>
#include <unordered_map>
#include <vector>

namespace orch {
namespace {

// The real clock. One thread sleeps until the earliest deadline or until a
// new, earlier timer is set; it never polls.
class SystemClock final : public Clock {
 public:
  SystemClock() : thread_([this] { run(); }) { thread_.detach(); }

  WallTime now() const override { return std::chrono::system_clock::now(); }
  SteadyTime steady_now() const override { return std::chrono::steady_clock::now(); }

  TimerId call_at(SteadyTime when, std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    TimerId id = next_id_++;
    timers_.emplace(std::make_pair(when, id), std::move(fn));
    deadlines_.emplace(id, when);
    // Wake the thread only when it would otherwise sleep past this deadline. A
    // timer set and cancelled per node call never wakes it: the next deadline
    // is usually later than the one it already sleeps until.
    if (when < wake_at_) {
      wake_at_ = when;
      cv_.notify_one();
    }
    return id;
  }

  bool cancel(TimerId id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto deadline = deadlines_.find(id);
    if (deadline == deadlines_.end()) return false;
    timers_.erase(std::make_pair(deadline->second, id));
    deadlines_.erase(deadline);
    return true;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (timers_.empty()) {
        wake_at_ = SteadyTime::max();
        cv_.wait(lock);
        continue;
      }
      auto first = timers_.begin();
      // Copy the deadline: cancel() may erase this timer while we wait.
      const SteadyTime when = first->first.first;
      if (when > std::chrono::steady_clock::now()) {
        wake_at_ = when;
        cv_.wait_until(lock, when);
        continue;
      }
      std::function<void()> fn = std::move(first->second);
      deadlines_.erase(first->first.second);
      timers_.erase(first);
      lock.unlock();
      run_guarded("clock timer", fn);
      fn = nullptr;  // its captures go before the lock is taken again
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  TimerId next_id_ = 1;
  std::map<std::pair<SteadyTime, TimerId>, std::function<void()>> timers_;
  std::unordered_map<TimerId, SteadyTime> deadlines_;  // for cancel by id
  // When the thread wakes on its own (max: it waits for a notify).
  SteadyTime wake_at_ = SteadyTime::max();
  std::thread thread_;
};

}  // namespace

int64_t Clock::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now().time_since_epoch()).count();
}

std::shared_ptr<Clock> Clock::system() {
  // Deliberately never destroyed: the timer thread may outlive static destructors.
  static auto* instance = new std::shared_ptr<Clock>(std::make_shared<SystemClock>());
  return *instance;
}

ManualClock::ManualClock(WallTime start_wall) : wall_start_(start_wall) {}

WallTime ManualClock::now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wall_start_ + std::chrono::duration_cast<WallTime::duration>(elapsed_);
}

SteadyTime ManualClock::steady_now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(elapsed_));
}

Clock::TimerId ManualClock::call_at(SteadyTime when, std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  TimerId id = next_id_++;
  timers_.emplace(std::make_pair(std::chrono::nanoseconds(when.time_since_epoch()), id), std::move(fn));
  return id;
}

bool ManualClock::cancel(TimerId id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->first.second == id) {
      timers_.erase(it);
      return true;
    }
  }
  return false;
}

void ManualClock::advance(std::chrono::nanoseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::chrono::nanoseconds target = elapsed_ + d;
  while (!timers_.empty() && timers_.begin()->first.first <= target) {
    auto first = timers_.begin();
    if (first->first.first > elapsed_) elapsed_ = first->first.first;
    std::function<void()> fn = std::move(first->second);
    timers_.erase(first);
    lock.unlock();
    fn();  // may set new timers; they fire in this loop if due
    lock.lock();
  }
  elapsed_ = target;
}

size_t ManualClock::pending_timers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timers_.size();
}

}  // namespace orch
