// SPDX-License-Identifier: MIT
//
// Worker selection (SPEC §6, NullBoiler engine reference §7.2): tag match,
// circuit, capacity, least loaded, a2a first for agent nodes.
//
// Not thread-safe: used under the registry's lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "orch/worker_registry.h"
#include "workers/worker_circuit.h"

namespace orch::internal {

// A registered worker and its live counters.
struct WorkerEntry {
  WorkerEntry(WorkerInfo worker, std::shared_ptr<WorkerProtocol> proto, uint64_t sequence,
              const CircuitBreaker& circuit_breaker)
      : info(std::move(worker)), protocol(std::move(proto)), seq(sequence), breaker(circuit_breaker) {}

  WorkerInfo info;
  std::shared_ptr<WorkerProtocol> protocol;
  uint64_t seq;                // registration order; newer wins ties
  int in_flight = 0;
  CircuitBreaker breaker;
  std::string last_error;
  uint64_t calls = 0;
  uint64_t failures = 0;
};

// True when a node wanting `wanted` may use a worker tagged `tags`: no wanted
// tags, or at least one in common.
bool tags_match(const std::vector<std::string>& tags, const std::vector<std::string>& wanted);

enum class Pick {
  kSelected,  // `worker` takes the call now
  kBusy,      // a matching worker will free up: wait
  kNoMatch,   // no worker serves this node
  kAllOpen,   // every matching worker's circuit is open until `reopen_at`
};

struct Selection {
  Pick pick = Pick::kNoMatch;
  std::shared_ptr<WorkerEntry> worker;
  SteadyTime reopen_at{};
};

Selection select_worker(const std::vector<std::shared_ptr<WorkerEntry>>& workers, const WorkerRequest& request,
                        SteadyTime now);

}  // namespace orch::internal
