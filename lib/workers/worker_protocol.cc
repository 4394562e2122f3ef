// SPDX-License-Identifier: MIT
// Defaults of the WorkerProtocol plugin interface.
#include "orch/worker_registry.h"

namespace orch {

Status WorkerProtocol::validate(const WorkerInfo& worker) const {
  (void)worker;
  return Status();
}

void WorkerProtocol::cancel(const std::string& call_id) { (void)call_id; }

Status WorkerProtocol::probe(const WorkerInfo& worker, std::chrono::milliseconds timeout) {
  (void)worker;
  (void)timeout;
  return Status();
}

void WorkerProtocol::attach(const WorkerInfo& worker) { (void)worker; }

void WorkerProtocol::detach(const WorkerInfo& worker) { (void)worker; }

const char* circuit_state_name(CircuitState state) {
  switch (state) {
    case CircuitState::kClosed: return "closed";
    case CircuitState::kOpen: return "open";
    case CircuitState::kHalfOpen: return "half_open";
  }
  return "closed";
}

}  // namespace orch
