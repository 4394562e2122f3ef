// SPDX-License-Identifier: MIT
//
// CircuitBreaker: stops sending calls to a worker that keeps failing.
//
// Closed: calls flow; `threshold` failures in a row open the circuit. Open:
// no calls until `cooldown` has passed. Half-open (cooldown over): one probe
// call at a time goes through; its success closes the circuit, its failure
// opens it for another cooldown. Any success resets the failure count.
//
// Not thread-safe: used under the registry's lock.
#pragma once

#include <chrono>

#include "orch/clock.h"
#include "orch/worker_registry.h"

namespace orch::internal {

class CircuitBreaker {
 public:
  CircuitBreaker(int threshold, std::chrono::milliseconds cooldown);

  CircuitState state(SteadyTime now) const;
  // May a call start now? (Half-open: only when no probe is running.)
  bool admits(SteadyTime now) const;
  // A call starts; returns true when it is the half-open probe.
  bool on_call_start(SteadyTime now);
  // The probe ended without a verdict (cancelled, throttled).
  void on_probe_abandoned() { probe_in_flight_ = false; }

  void record_success();
  void record_failure(SteadyTime now);

  int consecutive_failures() const { return failures_; }
  // When an open circuit lets a probe through; meaningful when not closed.
  SteadyTime open_until() const { return open_until_; }

 private:
  int threshold_;
  std::chrono::milliseconds cooldown_;
  int failures_ = 0;
  bool open_ = false;
  bool probe_in_flight_ = false;
  SteadyTime open_until_{};
};

}  // namespace orch::internal
