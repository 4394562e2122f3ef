// SPDX-License-Identifier: MIT
//
// The state behind WorkerRegistry: workers, protocols, the wait queue, calls
// in flight and rate limits, under one mutex. Protocol calls and callbacks
// always run outside it.
//
// Lifetime: the registry object owns the Impl; timers and in-flight call
// callbacks hold weak references, so they never keep it alive or touch it
// after it is gone.
#pragma once

#include <condition_variable>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "workers/call_pool.h"
#include "orch/worker_registry.h"
#include "workers/worker_select.h"

namespace orch {

struct ORCH_NO_EXPORT WorkerRegistry::Impl : std::enable_shared_from_this<WorkerRegistry::Impl> {
  // A call waiting for a free worker.
  struct Pending {
    WorkerRequest request;
    Callback done;
    Clock::TimerId timer = 0;  // fires at the request's deadline
  };
  // A call handed to a protocol.
  struct Call {
    std::shared_ptr<internal::WorkerEntry> worker;
    uint64_t serial = 0;
    SteadyTime deadline{};
    bool probe = false;  // the half-open circuit's probe
  };
  // A protocol call to start once the lock is released.
  struct Launch {
    std::shared_ptr<internal::WorkerEntry> worker;
    WorkerInfo info;
    WorkerRequest request;
    Callback done;
    uint64_t serial = 0;
  };

  explicit Impl(WorkerRegistryOptions opts);

  // Places queued calls on free workers. A call no worker can take now
  // waits, as in NullBoiler: for a matching worker to be registered, freed
  // or healed (its circuit re-opening), or for its deadline.
  // Re-entrant calls (from callbacks) fold into the running pass.
  void drain();
  // Drains again at `when` (the earliest time a waiting call's open circuit
  // lets a probe through). REQUIRES: mu held.
  void wake_at_locked(SteadyTime when);
  // Bookkeeping of a finished call: load, circuit, rate limit.
  void finish(const std::shared_ptr<internal::WorkerEntry>& worker, const std::string& call_id, uint64_t serial,
              const WorkerReply& reply);
  // REQUIRES: mu held.
  void finish_locked(const std::shared_ptr<internal::WorkerEntry>& worker, const std::string& call_id, uint64_t serial,
                     const WorkerReply& reply, const std::optional<WorkerRateLimit>& rate_limit);
  // A queued call's deadline passed.
  void expire(const std::shared_ptr<Pending>& pending);
  void cancel(const std::string& id);
  void shutdown();
  void check_health();
  // A probe's result on `worker`'s circuit and last error. REQUIRES: mu held.
  void record_health_locked(internal::WorkerEntry& worker, const Status& health);
  // Arms the periodic check due at `due` (default: one interval from now).
  // Each tick arms the next one at a fixed cadence before its check runs,
  // so a check that is slow, or a clock that jumps, never loses a tick.
  void schedule_health_check(std::optional<SteadyTime> due = std::nullopt);
  // Runs check_health on the background thread, or after the check that is
  // running: every tick gets its check (a backlog of a few at most).
  void request_health_check();

  // REQUIRES: mu held.
  Launch start_call_locked(const std::shared_ptr<internal::WorkerEntry>& worker, std::shared_ptr<Pending> pending,
                           SteadyTime now);
  std::shared_ptr<internal::WorkerEntry> find_locked(const std::string& id) const;
  // The rate-limit report of a successful reply, if it carries one (the
  // envelope's `rate_limit`, or that of an output that is a JSON object).
  // Pure: called before the lock is taken.
  static std::optional<WorkerRateLimit> rate_limit_of(const WorkerReply& reply);
  WorkerStatus status_locked(const internal::WorkerEntry& worker, SteadyTime now) const;
  Status check_worker_locked(const WorkerInfo& worker, std::shared_ptr<WorkerProtocol>* protocol) const;

  const WorkerRegistryOptions options;
  const std::shared_ptr<Clock> clock;

  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<WorkerProtocol>> protocols;
  std::vector<std::shared_ptr<internal::WorkerEntry>> workers;  // in registration order
  uint64_t next_seq = 1;
  std::map<std::string, WorkerRateLimit> rate_limits;
  std::list<std::shared_ptr<Pending>> queue;
  std::multimap<std::string, Call> calls;  // by call id
  bool draining = false;
  bool drain_again = false;
  bool shut_down = false;
  Clock::TimerId health_timer = 0;
  // wake_at_locked's timer, and when it fires.
  Clock::TimerId wake_timer = 0;
  SteadyTime wake_due{};
  bool health_check_running = false;
  int health_checks_owed = 0;  // ticks that met a running check (at most kMaxOwedHealthChecks)
  // shutdown() waits for a running round (it calls the host's gate and
  // on_health_checked, whose captures may go once the registry has), unless
  // it is that round's own thread calling.
  std::condition_variable health_idle;
  std::thread::id health_thread;
  // Runs periodic health checks (they block on probes).
  std::unique_ptr<internal::CallPool> background;
};

}  // namespace orch
