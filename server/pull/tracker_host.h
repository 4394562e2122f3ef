// SPDX-License-Identifier: MIT
//
// TrackerHost: what pull mode uses of the server that runs it, and nothing
// more. The server (start_tracker, from its App) fills it in; the tracker's
// parts each take the few members they need instead of the whole App.
//
// Who owns what: the host owns everything referred to here and keeps it alive
// until the tracker has stopped (App stops its tracker first).
//
// Thread-safety: the engine, the store and the functions are called from the
// tracker's threads at once; the flags are read without a lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "orch/engine.h"
#include "orch/store.h"

namespace orch::server {

struct Metrics;

struct TrackerHost {
  Engine* engine = nullptr;               // the server's engine: runs `dispatch` pipelines
  std::shared_ptr<Store> store;           // stored workflows; the tracker's own engine keeps its runs here
  const std::atomic<bool>* draining = nullptr;  // no new claims while set
  const std::atomic<bool>* stopping = nullptr;  // the server is shutting down
  int64_t default_timeout_ms = 0;         // for the tracker's own engine, as for the server's
  // The owner id of the server's engine: run leases in a shared database
  // then never keep one engine of this process from a run of the other.
  std::string engine_owner_id;
  // Whether this instance claims tasks this poll, leasing the turn for
  // `lease_ms` (renewed each poll): instances sharing a database poll
  // NullTickets one at a time. Unset: always (one process on its database).
  std::function<bool(int64_t lease_ms)> claim_turn;
  Metrics* metrics = nullptr;             // /metrics counts the tracker engine's runs too
  // Wakes the SSE streams of a run after its events changed.
  std::function<void(const std::string& run_id)> publish;
};

}  // namespace orch::server
