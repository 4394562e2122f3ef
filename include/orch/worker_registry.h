// SPDX-License-Identifier: MIT
//
// Workers: the registry of external workers and the protocols that reach them.
//
// A WorkerRegistry is a Dispatcher (see orch/dispatcher.h): hand it to the engine as
// EngineOptions::dispatcher. For every call it picks a worker (SPEC §6):
//
//   1. tag match: a node without worker_tags takes any worker; otherwise the
//      worker must carry at least one of the node's tags;
//   2. skip workers whose circuit is open (after `failure_threshold` failures
//      in a row; after `circuit_cooldown_ms` one probe call is let through and
//      its success closes the circuit again);
//   3. least in-flight calls among the workers under their max_concurrent
//      (ties: the most recently added); agent nodes try `a2a` workers first;
//   4. when no worker can take the call now (every matching one at
//      capacity or with its circuit open, or none matching at all) the call
//      waits in a FIFO queue, as NullBoiler's node waits for a worker: until
//      a slot frees, a circuit lets its probe through, or a matching worker
//      is added or updated; or until the call's deadline passes
//      (DeadlineExceeded, retryable, naming why). max_concurrent is never
//      exceeded.
//
// Protocols are plugins: a WorkerProtocol is registered under a name and a
// worker names its protocol. The registry comes with `webhook`, `api_chat`,
// `openai_chat` and `a2a` (HTTP, NullBoiler-compatible request bodies; A2A
// v0.3 `message/send`), `mqtt` and `redis_stream` (asynchronous, see
// orch/async_workers.h) unless WorkerRegistryOptions says otherwise.
//
//   auto workers = std::make_shared<orch::WorkerRegistry>();
//   (void)workers->add_worker({"w1", "http://127.0.0.1:8080/webhook"});
//   orch::EngineOptions options;
//   options.dispatcher = workers;
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "orch/clock.h"
#include "orch/export.h"
#include "orch/host_policy.h"
#include "orch/status.h"
#include "orch/dispatcher.h"

namespace orch {

// A worker record, as registered through the API or the config file.
struct WorkerInfo {
  std::string id;
  std::string url;
  std::string protocol = "webhook";
  std::string token;                 // sent as "Authorization: Bearer <token>" when set
  std::string model;                 // openai_chat: the model name (required there)
  std::vector<std::string> tags;
  int max_concurrent = 1;            // >= 1
};

// How calls reach a kind of worker. Implement it for a custom transport and
// register it with WorkerRegistry::register_protocol.
class ORCH_EXPORT WorkerProtocol {
 public:
  virtual ~WorkerProtocol() = default;

  // Checks a worker record when it is added or updated (e.g. a required
  // field). The default accepts any record.
  virtual Status validate(const WorkerInfo& worker) const;

  // Sends `request` to `worker`. Must not block; calls `done` exactly once,
  // from any thread (possibly before returning). The reply's output is the
  // worker's output text and its envelope the top-level reply fields (goto,
  // state_updates, usage, rate_limit, ui_messages, stream_messages, done).
  // Failures: status non-OK; retryable=false for errors a retry cannot fix;
  // retry_after_ms when the worker asked to wait.
  virtual void call(const WorkerInfo& worker, const WorkerRequest& request, Dispatcher::Callback done) = 0;

  // Best effort: abandon call `call_id` (a WorkerRequest::call_id). Its
  // callback still comes, typically with a Cancelled status.
  virtual void cancel(const std::string& call_id);

  // A health probe; may block up to `timeout`. OK means healthy. The default
  // reports every worker healthy.
  virtual Status probe(const WorkerInfo& worker, std::chrono::milliseconds timeout);

  // The registry calls attach() when a worker of this protocol is added (or
  // updated to it), before its first call, and detach() once it is removed
  // (or updated away). A protocol that holds something per destination (the
  // built-in mqtt and redis_stream keep one connection per broker) counts its
  // users and releases it with the last one; calls of that destination still
  // waiting then end at their deadline. attach() runs under the registry's
  // lock and must be quick; detach() does not, and may block briefly (joining
  // a connection's threads). Defaults: nothing.
  virtual void attach(const WorkerInfo& worker);
  virtual void detach(const WorkerInfo& worker);
};

enum class CircuitState { kClosed, kOpen, kHalfOpen };

// "closed", "open", "half_open".
ORCH_EXPORT const char* circuit_state_name(CircuitState state);

// The outcome of one health probe of one worker (see
// WorkerRegistryOptions::on_health_checked).
struct WorkerHealth {
  std::string worker_id;
  Status health;  // OK: healthy
};

// A worker as the registry sees it now.
struct WorkerStatus {
  WorkerInfo info;
  int in_flight = 0;
  CircuitState circuit = CircuitState::kClosed;
  int consecutive_failures = 0;
  int64_t circuit_open_until_ms = 0;  // wall-clock ms; 0 when closed
  std::string last_error;
  uint64_t calls = 0;                 // finished calls
  uint64_t failures = 0;              // of which failed
};

// The last rate-limit report of a worker (reply field `rate_limit`, or the
// x-ratelimit-* headers of an OpenAI-compatible worker).
struct WorkerRateLimit {
  std::string worker_id;
  int64_t remaining = 0;
  int64_t limit = 0;
  int64_t reset_ms = 0;
  int64_t updated_at_ms = 0;          // wall-clock ms
};

struct WorkerRegistryOptions {
  // Circuit breaker and queue deadlines run on this clock. Default:
  // Clock::system(). Share the engine's clock: request deadlines are read on it.
  std::shared_ptr<Clock> clock;
  // Consecutive failures that open a worker's circuit.
  int failure_threshold = 3;
  // How long an open circuit stays open before a probe call is let through.
  int64_t circuit_cooldown_ms = 60000;
  // Deadline of a call whose request carries none (the protocols registered
  // later default to it).
  int64_t default_timeout_ms = 300000;
  // check_health() every this many ms on a background thread; 0: never.
  int64_t health_check_interval_ms = 0;
  // Time limit of one health probe.
  int64_t health_check_timeout_ms = 5000;
  // Hosts workers may be reached at (see orch/host_policy.h). add_worker and
  // update_worker refuse a worker whose URL host it refuses; the HTTP
  // protocols (orch/http_workers.h) check it again, resolving the name,
  // before each new connection.
  // Default: link-local addresses (169.254.0.0/16, fe80::/10) refused. Check
  // it with validate_host_policy() first: a malformed entry is ignored here.
  HostPolicy host_policy;
  // Called with each rate-limit report a worker's reply carries (see
  // WorkerRateLimit), on the thread that took the reply, without the
  // registry's lock held: it must not block (queue the report and return).
  // orch serve shares the reports of instances that share a database.
  std::function<void(const WorkerRateLimit&)> on_rate_limit;
  // Asked on the health-check thread before each periodic check (not an
  // explicit check_health()); false skips that round's probes. Unset: every
  // round probes. orch serve answers it with a lease in the shared database,
  // so that instances sharing one probe once between them. It may block
  // briefly (one database statement).
  std::function<bool()> health_check_gate;
  // Called after each check_health() round (periodic or explicit) with the
  // result of every probe it made, on that round's thread, without the
  // registry's lock held. orch serve passes the results to the instances
  // that did not probe (see apply_health).
  std::function<void(const std::vector<WorkerHealth>&)> on_health_checked;
};

// Comes with no protocol: register the ones the host uses, e.g.
// orch::register_http_protocols (orch/http_workers.h),
// orch::register_async_protocols (orch/async_workers.h), or its own.
class ORCH_EXPORT WorkerRegistry : public Dispatcher {
 public:
  explicit WorkerRegistry(WorkerRegistryOptions options = {});
  // Fails queued calls with Cancelled and abandons in-flight ones.
  ~WorkerRegistry() override;
  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // Makes `protocol` available as `name` (replacing a protocol of that name;
  // workers already added keep the one they were added with until updated).
  Status register_protocol(std::string name, std::shared_ptr<WorkerProtocol> protocol);
  std::vector<std::string> protocol_names() const;
  // The options it was made with, the clock filled in.
  const WorkerRegistryOptions& options() const;

  // InvalidArgument for an empty id or url, max_concurrent < 1, an unknown
  // protocol ("unsupported worker protocol: x"), a record its protocol
  // rejects or a URL host options.host_policy refuses; AlreadyExists for a
  // taken id.
  Status add_worker(WorkerInfo worker);
  // Replaces the record of worker `worker.id` (NotFound when absent). Calls in
  // flight finish; load and circuit state are kept.
  Status update_worker(WorkerInfo worker);
  // NotFound when absent. Calls in flight finish; queued calls that no other
  // worker can take fail with Unavailable.
  Status remove_worker(const std::string& id);
  Result<WorkerStatus> get_worker(const std::string& id) const;
  // In the order the workers were added.
  std::vector<WorkerStatus> list_workers() const;
  std::vector<WorkerRateLimit> rate_limits() const;
  // Calls waiting for a free worker.
  size_t queued_calls() const;

  // Probes every worker whose circuit is not open (blocking, one at a time):
  // a healthy worker's failures are cleared and its circuit closed, an
  // unhealthy one records a failure.
  void check_health();
  // Records a health result found elsewhere (another process probed the
  // worker) as if this registry's own probe had found it: healthy clears
  // the worker's failures and closes its circuit, unhealthy records a
  // failure; a worker whose circuit is open here (cooling down, which this
  // registry's own round would not probe) is left alone. NotFound when no
  // worker has that id.
  Status apply_health(const WorkerHealth& result);

  void dispatch(const WorkerRequest& request, Callback done) override;
  // `call_id` may be a WorkerRequest::call_id or a step id: calls whose id
  // starts with "<step id>#" are cancelled too (the engine cancels by step).
  void cancel(const std::string& call_id) override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace orch
