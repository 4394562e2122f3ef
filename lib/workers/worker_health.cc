// SPDX-License-Identifier: MIT
// Worker health checks (NullBoiler engine reference §7.3): probe every worker
// whose circuit is not open; a healthy one is cleared, an unhealthy one
// records a failure. Optionally on a timer.
#include <algorithm>

#include "orch/thread_guard.h"
#include "workers/worker_registry_impl.h"

namespace orch {

void WorkerRegistry::Impl::check_health() {
  struct Target {
    std::shared_ptr<internal::WorkerEntry> worker;
    std::shared_ptr<WorkerProtocol> protocol;
    WorkerInfo info;
  };
  std::vector<Target> targets;
  {
    std::lock_guard<std::mutex> lock(mu);
    const SteadyTime now = clock->steady_now();
    for (const auto& w : workers) {
      if (w->breaker.state(now) == CircuitState::kOpen) continue;  // still cooling down
      targets.push_back(Target{w, w->protocol, w->info});
    }
  }
  const std::chrono::milliseconds timeout(options.health_check_timeout_ms);
  std::vector<WorkerHealth> results;
  results.reserve(targets.size());
  for (const Target& t : targets) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (shut_down) return;  // shutdown() waits for this round: end it now
    }
    Status health;
    try {
      health = t.protocol->probe(t.info, timeout);
    } catch (const std::exception& e) {
      health = Status::internal(std::string("health check threw: ") + e.what());
    } catch (...) {
      health = Status::internal("health check threw");
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      record_health_locked(*t.worker, health);
    }
    results.push_back(WorkerHealth{t.info.id, std::move(health)});
  }
  drain();  // a closed circuit may take waiting calls
  if (options.on_health_checked && !results.empty()) options.on_health_checked(results);
}

void WorkerRegistry::Impl::record_health_locked(internal::WorkerEntry& worker, const Status& health) {
  if (health.ok()) {
    worker.breaker.record_success();
    worker.last_error.clear();
  } else {
    worker.breaker.record_failure(clock->steady_now());
    worker.last_error = "health check: " + health.message();
  }
}

void WorkerRegistry::Impl::schedule_health_check(std::optional<SteadyTime> due) {
  std::weak_ptr<Impl> weak = weak_from_this();
  const auto interval = std::chrono::milliseconds(options.health_check_interval_ms);
  std::lock_guard<std::mutex> lock(mu);
  if (shut_down) return;
  if (!background) background = std::make_unique<internal::CallPool>(1);
  const SteadyTime when = due ? *due : clock->steady_now() + interval;
  health_timer = clock->call_at(when, [weak, when, interval] {
    auto self = weak.lock();
    if (!self) return;
    self->schedule_health_check(when + interval);
    self->request_health_check();
  });
}

void WorkerRegistry::Impl::request_health_check() {
  std::weak_ptr<Impl> weak = weak_from_this();
  std::lock_guard<std::mutex> lock(mu);
  if (shut_down) return;
  if (health_check_running) {
    constexpr int kMaxOwedHealthChecks = 4;  // probes slower than the interval do not pile up
    health_checks_owed = std::min(health_checks_owed + 1, kMaxOwedHealthChecks);
    return;
  }
  health_check_running = true;
  // Timer callbacks must not block: probe on the background thread.
  background->post([weak] {
    for (;;) {
      auto self = weak.lock();
      if (!self) return;
      {
        std::lock_guard<std::mutex> inner(self->mu);
        if (self->shut_down) {  // posted before the shutdown: nothing more to call
          self->health_check_running = false;
          self->health_idle.notify_all();
          return;
        }
        self->health_thread = std::this_thread::get_id();
      }
      run_guarded("worker health check", [&] {
        // Another process may probe for this one (see health_check_gate).
        if (!self->options.health_check_gate || self->options.health_check_gate()) self->check_health();
      });
      std::lock_guard<std::mutex> inner(self->mu);
      if (self->health_checks_owed == 0 || self->shut_down) {
        self->health_check_running = false;
        self->health_thread = std::thread::id();
        self->health_idle.notify_all();
        return;
      }
      --self->health_checks_owed;
    }
  });
}

}  // namespace orch
