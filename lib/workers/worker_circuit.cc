// SPDX-License-Identifier: MIT
#include "workers/worker_circuit.h"

#include <algorithm>

namespace orch::internal {

CircuitBreaker::CircuitBreaker(int threshold, std::chrono::milliseconds cooldown)
    : threshold_(std::max(1, threshold)), cooldown_(cooldown) {}

CircuitState CircuitBreaker::state(SteadyTime now) const {
  if (!open_) return CircuitState::kClosed;
  return now < open_until_ ? CircuitState::kOpen : CircuitState::kHalfOpen;
}

bool CircuitBreaker::admits(SteadyTime now) const {
  switch (state(now)) {
    case CircuitState::kClosed: return true;
    case CircuitState::kOpen: return false;
    case CircuitState::kHalfOpen: return !probe_in_flight_;
  }
  return false;
}

bool CircuitBreaker::on_call_start(SteadyTime now) {
  if (state(now) != CircuitState::kHalfOpen) return false;
  probe_in_flight_ = true;
  return true;
}

void CircuitBreaker::record_success() {
  failures_ = 0;
  open_ = false;
  probe_in_flight_ = false;
}

void CircuitBreaker::record_failure(SteadyTime now) {
  ++failures_;
  probe_in_flight_ = false;
  if (open_ || failures_ >= threshold_) {
    open_ = true;
    open_until_ = now + cooldown_;
  }
}

}  // namespace orch::internal
