// SPDX-License-Identifier: MIT
//
// Clock: where the engine gets the time and sets its timers (retry back-off,
// call deadlines, keep-alives). Injecting a ManualClock lets tests of timeouts
// and retries run instantly and deterministically, without sleeping.
//
// Ownership: hosts hand a Clock to the engine as a shared_ptr; Clock::system()
// returns a process-wide instance that lives until exit.
//
// Thread-safety: every method of every Clock here may be called from any thread.
// Timer callbacks must not block: they run on the clock's timer thread
// (SystemClock) or inside ManualClock::advance (the caller's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "orch/export.h"

namespace orch {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class ORCH_EXPORT Clock {
 public:
  using TimerId = uint64_t;

  virtual ~Clock() = default;

  // Wall-clock time, for timestamps shown to people and stored in records.
  virtual WallTime now() const = 0;
  // Monotonic time, for deadlines and intervals.
  virtual SteadyTime steady_now() const = 0;

  // Calls `fn` once, at or after `when`. Returns an id for cancel(); never 0.
  virtual TimerId call_at(SteadyTime when, std::function<void()> fn) = 0;
  // Stops a timer that has not fired; returns false when it already fired or
  // was cancelled. A callback that is running when cancel() is called finishes.
  virtual bool cancel(TimerId id) = 0;

  TimerId call_after(std::chrono::nanoseconds delay, std::function<void()> fn) {
    return call_at(steady_now() + delay, std::move(fn));
  }

  // Milliseconds since the Unix epoch of now().
  int64_t now_ms() const;

  // The real clock, with one background timer thread started on first use.
  static std::shared_ptr<Clock> system();
};

// A clock that moves only when told to. Timers fire inside advance(), in
// deadline order (ties in the order they were set), on the calling thread.
class ORCH_EXPORT ManualClock : public Clock {
 public:
  explicit ManualClock(WallTime start_wall = WallTime(std::chrono::hours(24 * 365 * 56)));

  WallTime now() const override;
  SteadyTime steady_now() const override;
  TimerId call_at(SteadyTime when, std::function<void()> fn) override;
  bool cancel(TimerId id) override;

  // Moves time forward by `d`, firing every timer that comes due on the way
  // (each sees steady_now() equal to its own deadline).
  void advance(std::chrono::nanoseconds d);
  // Number of timers waiting to fire.
  size_t pending_timers() const;

 private:
  mutable std::mutex mu_;
  WallTime wall_start_;
  std::chrono::nanoseconds elapsed_{0};
  TimerId next_id_ = 1;
  // Keyed by (deadline offset, id) so ties fire in the order they were set.
  std::map<std::pair<std::chrono::nanoseconds, TimerId>, std::function<void()>> timers_;
};

}  // namespace orch
