// SPDX-License-Identifier: MIT
#include "workers/worker_select.h"

#include <algorithm>

namespace orch::internal {
namespace {

// The least loaded admissible worker under capacity among `candidates`
// (ties: the newest), or null.
std::shared_ptr<WorkerEntry> least_loaded(const std::vector<std::shared_ptr<WorkerEntry>>& candidates,
                                          SteadyTime now, bool a2a_only) {
  std::shared_ptr<WorkerEntry> best;
  for (const auto& w : candidates) {
    if (a2a_only && w->info.protocol != "a2a") continue;
    if (w->in_flight >= w->info.max_concurrent || !w->breaker.admits(now)) continue;
    if (!best || w->in_flight < best->in_flight || (w->in_flight == best->in_flight && w->seq > best->seq)) {
      best = w;
    }
  }
  return best;
}

}  // namespace


Selection select_worker(const std::vector<std::shared_ptr<WorkerEntry>>& workers, const WorkerRequest& request,
                        SteadyTime now) {
  std::vector<std::shared_ptr<WorkerEntry>> matching;
  for (const auto& w : workers) {
    if (tags_match(w->info.tags, request.worker_tags)) matching.push_back(w);
  }
  Selection s;
  if (matching.empty()) return s;
  if (request.node_type == "agent") s.worker = least_loaded(matching, now, true);
  if (!s.worker) s.worker = least_loaded(matching, now, false);
  if (s.worker) {
    s.pick = Pick::kSelected;
    return s;
  }
  // Nothing free now. Wait if some matching worker can take calls later
  // without a cooldown; else every circuit is open.
  bool first = true;
  for (const auto& w : matching) {
    if (w->breaker.state(now) != CircuitState::kOpen) {
      s.pick = Pick::kBusy;
      return s;
    }
    if (first || w->breaker.open_until() < s.reopen_at) s.reopen_at = w->breaker.open_until();
    first = false;
  }
  s.pick = Pick::kAllOpen;
  return s;
}

}  // namespace orch::internal
