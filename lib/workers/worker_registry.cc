// SPDX-License-Identifier: MIT
// WorkerRegistry: worker records, selection with a FIFO wait queue, the
// circuit breaker bookkeeping and cancellation (SPEC §6).
#include <algorithm>
#include <atomic>

#include "orch/url.h"
#include "orch/thread_guard.h"
#include "workers/worker_registry_impl.h"

namespace orch {
namespace {

using internal::Pick;
using internal::WorkerEntry;

WorkerReply failure(Status status, bool retryable, int64_t retry_after_ms = -1) {
  WorkerReply reply;
  reply.status = std::move(status);
  reply.retryable = retryable;
  reply.retry_after_ms = retry_after_ms;
  return reply;
}

// True when call `key` belongs to `id`: the call id itself, or a call of step `id`.
bool call_belongs_to(const std::string& key, const std::string& id) {
  return key == id || step_of_call_id(key) == id;
}

std::string no_worker_message(const WorkerRequest& request) {
  std::string msg = "no worker available for node " + request.node_name;
  if (!request.worker_tags.empty()) {
    msg += " (tags:";
    for (const std::string& t : request.worker_tags) msg += " " + t;
    msg += ")";
  }
  return msg;
}

int64_t to_wall_ms(const Clock& clock, SteadyTime when) {
  auto delta = std::chrono::duration_cast<std::chrono::milliseconds>(when - clock.steady_now());
  return clock.now_ms() + delta.count();
}

WorkerRegistryOptions with_clock(WorkerRegistryOptions options) {
  if (!options.clock) options.clock = Clock::system();
  return options;
}

}  // namespace

WorkerRegistry::Impl::Impl(WorkerRegistryOptions opts) : options(with_clock(std::move(opts))), clock(options.clock) {}

std::shared_ptr<WorkerEntry> WorkerRegistry::Impl::find_locked(const std::string& id) const {
  for (const auto& w : workers) {
    if (w->info.id == id) return w;
  }
  return nullptr;
}

Status WorkerRegistry::Impl::check_worker_locked(const WorkerInfo& worker,
                                                 std::shared_ptr<WorkerProtocol>* protocol) const {
  if (worker.id.empty()) return Status::invalid_argument("worker id is required");
  if (worker.url.empty()) return Status::invalid_argument("worker url is required");
  if (worker.max_concurrent < 1) return Status::invalid_argument("max_concurrent must be at least 1");
  auto it = protocols.find(worker.protocol);
  if (it == protocols.end()) return Status::invalid_argument("unsupported worker protocol: " + worker.protocol);
  // Protocols may come from the host: one that throws must not reach the caller.
  Status valid;
  if (!run_guarded("worker protocol validate", [&] { valid = it->second->validate(worker); })) {
    return Status::invalid_argument("worker protocol " + worker.protocol + " failed to validate the worker");
  }
  ORCH_RETURN_IF_ERROR(valid);
  // A URL orch can parse (http, https, mqtt, redis) names a host the policy
  // must allow; other URLs are the business of their (host-supplied) protocol.
  if (Result<Url> url = parse_url(worker.url); url.ok()) {
    ORCH_RETURN_IF_ERROR(check_host(options.host_policy, url->host));
  }
  *protocol = it->second;
  return Status();
}

WorkerRegistry::Impl::Launch WorkerRegistry::Impl::start_call_locked(const std::shared_ptr<WorkerEntry>& worker,
                                                                     std::shared_ptr<Pending> pending,
                                                                     SteadyTime now) {
  static std::atomic<uint64_t> next_serial{1};
  Call call;
  call.worker = worker;
  call.serial = next_serial++;
  call.deadline = pending->request.deadline;
  call.probe = worker->breaker.on_call_start(now);
  ++worker->in_flight;
  calls.emplace(pending->request.call_id, call);
  if (pending->timer) clock->cancel(pending->timer);
  return Launch{worker, worker->info, std::move(pending->request), std::move(pending->done), call.serial};
}

void WorkerRegistry::Impl::drain() {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (draining) {
      drain_again = true;
      return;
    }
    draining = true;
  }
  std::weak_ptr<Impl> weak = weak_from_this();
  for (;;) {
    std::vector<Launch> launches;
    {
      std::lock_guard<std::mutex> lock(mu);
      drain_again = false;
      const SteadyTime now = clock->steady_now();
      for (auto it = queue.begin(); it != queue.end();) {
        std::shared_ptr<Pending> p = *it;
        internal::Selection s = internal::select_worker(workers, p->request, now);
        if (s.pick == Pick::kSelected) {
          it = queue.erase(it);
          launches.push_back(start_call_locked(s.worker, p, now));
          continue;
        }
        // Busy, no matching worker, or every matching circuit open: the
        // call waits (NullBoiler tries the node again, forever) until its
        // deadline, if it has one.
        if (!p->timer && p->request.deadline != SteadyTime()) {
          p->timer = clock->call_at(p->request.deadline, [weak, p] {
            if (auto self = weak.lock()) self->expire(p);
          });
        }
        if (s.pick == Pick::kAllOpen) wake_at_locked(s.reopen_at);
        ++it;
      }
      if (launches.empty() && !drain_again) {
        draining = false;
        return;
      }
    }
    for (Launch& l : launches) {
      auto fired = std::make_shared<std::atomic<bool>>(false);
      std::string call_id = l.request.call_id;
      // Weak: a protocol holding an unanswered callback must not keep its own
      // worker entry (which holds the protocol) alive.
      std::weak_ptr<WorkerEntry> weak_worker = l.worker;
      Callback wrapped = [weak, weak_worker, worker_id = l.info.id, protocol = l.info.protocol, call_id,
                          serial = l.serial, done = std::move(l.done), fired](WorkerReply reply) {
        if (fired->exchange(true)) return;  // a protocol must answer once; ignore more
        if (reply.worker_id.empty()) reply.worker_id = worker_id;
        if (reply.worker_protocol.empty()) reply.worker_protocol = protocol;
        auto self = weak.lock();
        auto worker = weak_worker.lock();
        if (self && worker) self->finish(worker, call_id, serial, reply);
        self = nullptr;  // the caller's callback may drop the last owner of the registry
        done(std::move(reply));
        if ((self = weak.lock())) self->drain();
      };
      try {
        l.worker->protocol->call(l.info, l.request, wrapped);
      } catch (const std::exception& e) {
        wrapped(failure(Status::internal(std::string("worker protocol threw: ") + e.what()), true));
      } catch (...) {
        wrapped(failure(Status::internal("worker protocol threw"), true));
      }
    }
  }
}

void WorkerRegistry::Impl::wake_at_locked(SteadyTime when) {
  if (shut_down || (wake_timer != 0 && wake_due <= when)) return;
  if (wake_timer != 0) clock->cancel(wake_timer);
  wake_due = when;
  std::weak_ptr<Impl> weak = weak_from_this();
  wake_timer = clock->call_at(when, [weak] {
    auto self = weak.lock();
    if (!self) return;
    {
      std::lock_guard<std::mutex> lock(self->mu);
      self->wake_timer = 0;
    }
    self->drain();
  });
}

void WorkerRegistry::Impl::finish(const std::shared_ptr<WorkerEntry>& worker, const std::string& call_id,
                                  uint64_t serial, const WorkerReply& reply) {
  // Read before the lock: an output may have to be parsed for it.
  std::optional<WorkerRateLimit> rate_limit = reply.status.ok() ? rate_limit_of(reply) : std::nullopt;
  if (rate_limit) {
    rate_limit->worker_id = worker->info.id;
    rate_limit->updated_at_ms = clock->now_ms();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    finish_locked(worker, call_id, serial, reply, rate_limit);
  }
  if (rate_limit && options.on_rate_limit) {
    (void)run_guarded("rate-limit observer", [&] { options.on_rate_limit(*rate_limit); });
  }
}

void WorkerRegistry::Impl::finish_locked(const std::shared_ptr<WorkerEntry>& worker, const std::string& call_id,
                                         uint64_t serial, const WorkerReply& reply,
                                         const std::optional<WorkerRateLimit>& rate_limit) {
  const SteadyTime now = clock->steady_now();
  Call call;
  auto range = calls.equal_range(call_id);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second.serial == serial) {
      call = it->second;
      calls.erase(it);
      break;
    }
  }
  --worker->in_flight;
  ++worker->calls;
  if (reply.status.ok()) {
    worker->breaker.record_success();
    worker->last_error.clear();
    if (rate_limit) rate_limits[worker->info.id] = *rate_limit;
    return;
  }
  ++worker->failures;
  worker->last_error = reply.status.message();
  const StatusCode code = reply.status.code();
  const bool timed_out = call.deadline != SteadyTime() && now >= call.deadline;
  // Abandoned by the caller, or throttled: the worker answered nothing wrong.
  const bool neutral = (code == StatusCode::kCancelled && !timed_out) ||
                       (code == StatusCode::kResourceExhausted && reply.retryable);
  if (neutral) {
    if (call.probe) worker->breaker.on_probe_abandoned();
  } else {
    worker->breaker.record_failure(now);
  }
}

std::optional<WorkerRateLimit> WorkerRegistry::Impl::rate_limit_of(const WorkerReply& reply) {
  const Value* limits = reply.envelope.find("rate_limit");
  Value parsed;
  // An output that is a JSON object is parsed only when it may hold a report:
  // most replies do not, and this runs for every reply.
  if (!limits && !reply.output.empty() && reply.output.front() == '{' &&
      reply.output.find("\"rate_limit\"") != std::string::npos) {
    if (Result<Value> r = parse_json(reply.output); r.ok()) {
      parsed = std::move(r).value();
      limits = parsed.find("rate_limit");
    }
  }
  if (!limits || !limits->is_object()) return std::nullopt;
  WorkerRateLimit rl;
  rl.remaining = (*limits)["remaining"].get_int(0);
  rl.limit = (*limits)["limit"].get_int(0);
  rl.reset_ms = (*limits)["reset_ms"].get_int(0);
  if (rl.remaining == 0 && rl.limit == 0) return std::nullopt;  // NullBoiler: no information
  return rl;
}

void WorkerRegistry::Impl::expire(const std::shared_ptr<Pending>& pending) {
  Callback done;
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = std::find(queue.begin(), queue.end(), pending);
    if (it == queue.end()) return;  // started or cancelled meanwhile
    queue.erase(it);
    done = std::move(pending->done);
    switch (internal::select_worker(workers, pending->request, clock->steady_now()).pick) {
      case Pick::kNoMatch:
        why = no_worker_message(pending->request) + " before its deadline";
        break;
      case Pick::kAllOpen:
        why = no_worker_message(pending->request) + " before its deadline: every matching worker's circuit is open";
        break;
      default:
        why = "no worker became free before the deadline for node " + pending->request.node_name;
    }
  }
  done(failure(Status::deadline_exceeded(why), true));
}

void WorkerRegistry::Impl::cancel(const std::string& id) {
  std::vector<Callback> dropped;
  std::vector<std::pair<std::shared_ptr<WorkerProtocol>, std::string>> running;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = queue.begin(); it != queue.end();) {
      if (call_belongs_to((*it)->request.call_id, id)) {
        if ((*it)->timer) clock->cancel((*it)->timer);
        dropped.push_back(std::move((*it)->done));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = calls.lower_bound(id); it != calls.end() && it->first.compare(0, id.size(), id) == 0; ++it) {
      if (call_belongs_to(it->first, id)) running.emplace_back(it->second.worker->protocol, it->first);
    }
  }
  for (auto& [protocol, call_id] : running) {
    run_guarded("worker protocol cancel", [&p = protocol, &id = call_id] { p->cancel(id); });
  }
  for (Callback& done : dropped) done(failure(Status::cancelled("call cancelled"), true));
}

void WorkerRegistry::Impl::shutdown() {
  std::list<std::shared_ptr<Pending>> waiting;
  std::vector<std::pair<std::shared_ptr<WorkerProtocol>, std::string>> running;
  {
    std::lock_guard<std::mutex> lock(mu);
    shut_down = true;
    waiting.swap(queue);
    for (const auto& p : waiting) {
      if (p->timer) clock->cancel(p->timer);
    }
    for (const auto& [call_id, call] : calls) running.emplace_back(call.worker->protocol, call_id);
    if (health_timer) clock->cancel(health_timer);
    health_timer = 0;
    if (wake_timer) clock->cancel(wake_timer);
    wake_timer = 0;
  }
  for (auto& [protocol, call_id] : running) {
    run_guarded("worker protocol cancel", [&p = protocol, &id = call_id] { p->cancel(id); });
  }
  for (auto& p : waiting) p->done(failure(Status::cancelled("worker registry shut down"), true));
  // A health round in flight calls the host's callbacks: it ends (at the
  // next worker, or after the probe under way) before the registry is gone.
  std::unique_lock<std::mutex> lock(mu);
  if (health_thread != std::this_thread::get_id()) {
    health_idle.wait(lock, [this] { return !health_check_running; });
  }
}

WorkerStatus WorkerRegistry::Impl::status_locked(const WorkerEntry& worker, SteadyTime now) const {
  WorkerStatus s;
  s.info = worker.info;
  s.in_flight = worker.in_flight;
  s.circuit = worker.breaker.state(now);
  s.consecutive_failures = worker.breaker.consecutive_failures();
  if (s.circuit != CircuitState::kClosed) s.circuit_open_until_ms = to_wall_ms(*clock, worker.breaker.open_until());
  s.last_error = worker.last_error;
  s.calls = worker.calls;
  s.failures = worker.failures;
  return s;
}

// ---- WorkerRegistry ----

WorkerRegistry::WorkerRegistry(WorkerRegistryOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {
  if (impl_->options.health_check_interval_ms > 0) impl_->schedule_health_check();
}

WorkerRegistry::~WorkerRegistry() { impl_->shutdown(); }

Status WorkerRegistry::register_protocol(std::string name, std::shared_ptr<WorkerProtocol> protocol) {
  if (name.empty()) return Status::invalid_argument("protocol name is required");
  if (!protocol) return Status::invalid_argument("protocol " + name + " is null");
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->protocols[std::move(name)] = std::move(protocol);
  return Status();
}

const WorkerRegistryOptions& WorkerRegistry::options() const { return impl_->options; }

std::vector<std::string> WorkerRegistry::protocol_names() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::string> names;
  for (const auto& [name, protocol] : impl_->protocols) names.push_back(name);
  return names;
}

Status WorkerRegistry::add_worker(WorkerInfo worker) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::shared_ptr<WorkerProtocol> protocol;
    ORCH_RETURN_IF_ERROR(impl_->check_worker_locked(worker, &protocol));
    if (impl_->find_locked(worker.id)) return Status::already_exists("worker " + worker.id + " already exists");
    internal::CircuitBreaker breaker(impl_->options.failure_threshold,
                                     std::chrono::milliseconds(impl_->options.circuit_cooldown_ms));
    if (!run_guarded("worker protocol attach", [&] { protocol->attach(worker); })) {
      return Status::internal("worker protocol " + worker.protocol + " failed to take the worker");
    }
    impl_->workers.push_back(
        std::make_shared<WorkerEntry>(std::move(worker), std::move(protocol), impl_->next_seq++, breaker));
  }
  impl_->drain();
  return Status();
}

Status WorkerRegistry::update_worker(WorkerInfo worker) {
  std::shared_ptr<WorkerProtocol> old_protocol;
  WorkerInfo old_info;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::shared_ptr<WorkerEntry> entry = impl_->find_locked(worker.id);
    if (!entry) return Status::not_found("worker " + worker.id + " not found");
    std::shared_ptr<WorkerProtocol> protocol;
    ORCH_RETURN_IF_ERROR(impl_->check_worker_locked(worker, &protocol));
    if (!run_guarded("worker protocol attach", [&] { protocol->attach(worker); })) {
      return Status::internal("worker protocol " + worker.protocol + " failed to take the worker");
    }
    old_protocol = std::move(entry->protocol);
    old_info = std::move(entry->info);
    entry->info = std::move(worker);
    entry->protocol = std::move(protocol);
  }
  // Outside the lock: releasing a connection may join its threads.
  run_guarded("worker protocol detach", [&] { old_protocol->detach(old_info); });
  impl_->drain();
  return Status();
}

Status WorkerRegistry::remove_worker(const std::string& id) {
  std::shared_ptr<WorkerProtocol> protocol;
  WorkerInfo info;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto& workers = impl_->workers;
    auto it = std::find_if(workers.begin(), workers.end(), [&](const auto& w) { return w->info.id == id; });
    if (it == workers.end()) return Status::not_found("worker " + id + " not found");
    protocol = (*it)->protocol;
    info = (*it)->info;
    workers.erase(it);
    impl_->rate_limits.erase(id);
  }
  // Outside the lock: releasing a connection may join its threads.
  run_guarded("worker protocol detach", [&] { protocol->detach(info); });
  impl_->drain();
  return Status();
}

Result<WorkerStatus> WorkerRegistry::get_worker(const std::string& id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::shared_ptr<WorkerEntry> entry = impl_->find_locked(id);
  if (!entry) return Status::not_found("worker " + id + " not found");
  return impl_->status_locked(*entry, impl_->clock->steady_now());
}

std::vector<WorkerStatus> WorkerRegistry::list_workers() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const SteadyTime now = impl_->clock->steady_now();
  std::vector<WorkerStatus> out;
  out.reserve(impl_->workers.size());
  for (const auto& w : impl_->workers) out.push_back(impl_->status_locked(*w, now));
  return out;
}

std::vector<WorkerRateLimit> WorkerRegistry::rate_limits() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<WorkerRateLimit> out;
  for (const auto& [id, rl] : impl_->rate_limits) out.push_back(rl);
  return out;
}

size_t WorkerRegistry::queued_calls() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->queue.size();
}

void WorkerRegistry::check_health() { impl_->check_health(); }

Status WorkerRegistry::apply_health(const WorkerHealth& result) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto worker = impl_->find_locked(result.worker_id);
    if (!worker) return Status::not_found("worker not found: " + result.worker_id);
    // As this registry's own round would: a circuit still cooling down here
    // is not probed, so another process's result does not close it early
    // (its calls from here failed, whatever the worker told that process).
    if (worker->breaker.state(impl_->clock->steady_now()) == CircuitState::kOpen) return Status();
    impl_->record_health_locked(*worker, result.health);
  }
  impl_->drain();  // a closed circuit may take waiting calls
  return Status();
}

void WorkerRegistry::dispatch(const WorkerRequest& request, Callback done) {
  auto pending = std::make_shared<Impl::Pending>();
  pending->request = request;
  pending->done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->shut_down) {
      impl_->queue.push_back(std::move(pending));
      pending = nullptr;
    }
  }
  if (pending) {
    pending->done(failure(Status::cancelled("worker registry shut down"), true));
    return;
  }
  // FIFO: the new call goes behind the ones already waiting.
  impl_->drain();
}

void WorkerRegistry::cancel(const std::string& call_id) { impl_->cancel(call_id); }

}  // namespace orch
