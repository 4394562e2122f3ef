// SPDX-License-Identifier: MIT
// The redis_stream worker protocol: requests XADDed with a correlation id,
// replies read through a consumer group by one reader per broker.
#include "workers/async/redis_stream_protocol.h"
#include "workers/worker_reply.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "workers/async/async_calls.h"
#include "workers/async/async_wire.h"
#include "workers/async/broker_sessions.h"
#include "workers/async/redis_client.h"
#include "workers/async/redis_pending.h"
#include "workers/async/redis_publisher.h"
#include "workers/async/redis_reply_reader.h"

namespace orch::internal {
namespace {

using std::chrono::milliseconds;

constexpr int kDefaultPort = 6379;
constexpr int64_t kNonDurableExpiryS = 24 * 3600;

// One broker: its pending set, publisher and reply reader.
struct Broker {
  std::string endpoint;
  std::shared_ptr<RedisPendingSet> pending;
  std::shared_ptr<CallWatches> watches;  // shared runs only
  std::unique_ptr<RedisPublisher> publisher;
  std::unique_ptr<RedisReplyReader> reader;

  // Ends both threads (joined) and closes their connections.
  void stop() {
    publisher->stop();
    reader->stop();
  }

  // Why the broker cannot be used right now (empty when it can).
  std::string trouble() const {
    std::string error = publisher->last_error();
    if (error.empty()) error = reader->last_error();
    return error;
  }
};

// State shared with the brokers' threads (which hold it weakly).
class RedisCore : public std::enable_shared_from_this<RedisCore> {
 public:
  explicit RedisCore(AsyncSettings settings)
      : settings_(std::move(settings)),
        clock_(settings_.options.clock),
        calls_(std::make_shared<AsyncCalls>(clock_, milliseconds(settings_.options.orphan_ttl_ms))) {}

  void init() {
    std::weak_ptr<RedisCore> weak = weak_from_this();
    calls_->set_on_timeout([weak](const std::string& call_id) {
      if (auto self = weak.lock()) self->forget(call_id);
    });
  }

  const AsyncSettings& settings() const { return settings_; }
  const Clock& clock() const { return *clock_; }
  AsyncCalls& calls() { return *calls_; }

  BrokerSessions<Broker>& brokers() { return brokers_; }

  // Started on first use; null once stopped or when no worker uses that
  // broker any more (see broker_sessions.h).
  std::shared_ptr<Broker> broker_for(const BrokerTarget& target) {
    return brokers_.get(target.endpoint(), [&] { return start_broker(target); });
  }

  // A reply held unacknowledged was handed to its call: acknowledge it now.
  void release_held(const std::string& call_id) {
    std::string endpoint, entry_id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = held_.find(call_id);
      if (it == held_.end()) return;
      endpoint = it->second.first;
      entry_id = it->second.second;
      held_.erase(it);
    }
    if (auto broker = brokers_.find(endpoint)) broker->reader->ack_later(entry_id, call_id);
  }

  // Drops the pending record of a call that is over.
  void forget(const std::string& call_id) {
    for (const auto& broker : brokers_.all()) {
      if (broker->watches) broker->watches->remove(call_id);
      if (broker->pending->contains(call_id)) broker->reader->ack_later("", call_id);
    }
  }

  void stop() {
    for (const auto& broker : brokers_.close()) broker->stop();
  }

 private:
  std::shared_ptr<Broker> start_broker(const BrokerTarget& target) {
    auto broker = std::make_shared<Broker>();
    broker->endpoint = target.endpoint();
    broker->pending = std::make_shared<RedisPendingSet>(settings_.redis_pending_key(), settings_.options.pending_ttl_ms);
    if (settings_.options.shared_runs) broker->watches = std::make_shared<CallWatches>();
    std::weak_ptr<RedisCore> weak = weak_from_this();

    RedisPublisher::Config pc;
    pc.host = target.host;
    pc.port = target.port;
    pc.reply_stream = settings_.redis_reply_stream();
    pc.max_len = settings_.options.stream_max_len;
    pc.watches = broker->watches;
    pc.instance = settings_.instance;
    pc.route_grace_ms = settings_.options.orphan_ttl_ms;
    RedisPublisher::Hooks ph;
    ph.still_waiting = [weak](const std::string& call_id) {
      auto self = weak.lock();
      return self && self->calls_->is_waiting(call_id);
    };
    ph.on_failed = [weak](const std::string& call_id, Status error) {
      if (auto self = weak.lock()) self->calls_->fail(call_id, failure(std::move(error), true));
    };
    broker->publisher = std::make_unique<RedisPublisher>(pc, broker->pending, ph, clock_);

    RedisReplyReader::Config rc;
    rc.host = target.host;
    rc.port = target.port;
    rc.stream = settings_.redis_reply_stream();
    rc.group = settings_.options.consumer_group;
    rc.consumer = settings_.instance;
    rc.expire_s = settings_.durable ? 0 : kNonDurableExpiryS;
    rc.claim_min_idle_ms = settings_.options.redis_claim_idle_ms;
    rc.watches = broker->watches;
    rc.instance = settings_.instance;
    rc.forward_max_len = settings_.options.stream_max_len;
    RedisReplyReader::Hooks rh;
    std::string endpoint = broker->endpoint;
    std::shared_ptr<RedisPendingSet> pending = broker->pending;
    rh.on_entry = [weak, endpoint, pending](const RedisReplyReader::Entry& entry, std::string* call_id) {
      auto self = weak.lock();
      if (!self) return RedisReplyReader::Verdict::kHold;  // shutting down: the next orch reads it
      return self->on_entry(endpoint, *pending, entry, call_id);
    };
    rh.on_tick = [weak] {
      if (auto self = weak.lock()) self->expire_orphans();
    };
    rh.route_of = [](const RedisReplyReader::Entry& entry) {
      Result<AsyncReply> parsed = parse_entry(entry);
      return parsed.ok() ? parsed->correlation_id : std::string();
    };
    rh.on_foreign_entry = [weak](const RedisReplyReader::Entry& entry) {
      auto self = weak.lock();
      if (!self) return false;  // shutting down: the next owner reads it
      Result<AsyncReply> parsed = parse_entry(entry);
      if (!parsed.ok()) return false;
      const std::string id = parsed->correlation_id;
      return self->calls_->deliver(id, std::move(parsed->reply)) != AsyncCalls::Delivery::kOrphan;
    };
    broker->reader = std::make_unique<RedisReplyReader>(rc, broker->pending, rh, clock_);
    return broker;
  }

  // A reply stream entry read as a reply (InvalidArgument when it is none).
  static Result<AsyncReply> parse_entry(const RedisReplyReader::Entry& entry) {
    const std::string* payload = entry.field("payload");
    const std::string* correlation = entry.field("correlation_id");
    if (!payload) return Status::invalid_argument("not a reply");
    return parse_async_reply(*payload, correlation ? *correlation : std::string());
  }

  RedisReplyReader::Verdict on_entry(const std::string& endpoint, const RedisPendingSet& pending,
                                     const RedisReplyReader::Entry& entry, std::string* call_id) {
    Result<AsyncReply> parsed = parse_entry(entry);
    if (!parsed.ok()) return RedisReplyReader::Verdict::kAck;  // not a reply
    const std::string id = parsed->correlation_id;
    AsyncCalls::Delivery delivery = calls_->deliver(id, std::move(parsed->reply));
    if (delivery != AsyncCalls::Delivery::kOrphan) {
      // (an adopted call answered here, passed on: its origin's stream need not be read for it)
      if (auto broker = brokers_.find(endpoint); broker && broker->watches) broker->watches->remove(id);
    }
    if (delivery == AsyncCalls::Delivery::kOrphan && pending.contains(id)) {
      // A reply to a request this orch sent, whose call is not waiting now
      // (orch restarted, or the run will retry): keep it unacknowledged until
      // the call is dispatched again, so a crash does not lose it.
      std::lock_guard<std::mutex> lock(mu_);
      held_[id] = {endpoint, entry.id};
      return RedisReplyReader::Verdict::kHold;
    }
    *call_id = id;
    return RedisReplyReader::Verdict::kAck;
  }

  void expire_orphans() {
    for (const std::string& id : calls_->expire_orphans()) {
      bool was_held;
      {
        std::lock_guard<std::mutex> lock(mu_);
        was_held = held_.count(id) != 0;
      }
      if (was_held) {
        release_held(id);
      } else {
        forget(id);
      }
    }
  }

  const AsyncSettings settings_;
  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<AsyncCalls> calls_;
  std::mutex mu_;
  BrokerSessions<Broker> brokers_;                                          // by "host:port"
  std::map<std::string, std::pair<std::string, std::string>> held_;        // call id -> (broker, entry id)
};

class RedisStreamProtocol final : public WorkerProtocol {
 public:
  explicit RedisStreamProtocol(std::shared_ptr<RedisCore> core) : core_(std::move(core)) {}
  ~RedisStreamProtocol() override { core_->stop(); }
  RedisStreamProtocol(const RedisStreamProtocol&) = delete;
  RedisStreamProtocol& operator=(const RedisStreamProtocol&) = delete;

  Status validate(const WorkerInfo& worker) const override {
    return parse_broker_url(worker.url, "redis", kDefaultPort).status();
  }

  void call(const WorkerInfo& worker, const WorkerRequest& request, Dispatcher::Callback done) override {
    RedisCore& core = *core_;
    const Clock& clock = core.clock();
    const SteadyTime now = clock.steady_now();
    Result<BrokerCall> started = begin_broker_call(worker, request, "redis", kDefaultPort, "redis_stream", now,
                                                core.settings().options.default_timeout_ms);
    if (!started.ok()) {
      done(failure(started.status(), false));
      return;
    }
    const BrokerTarget* target = &started->target;
    const SteadyTime deadline = started->deadline;
    const int64_t wait_ms = started->wait_ms;
    std::shared_ptr<Broker> broker = core.broker_for(*target);
    if (!broker) {
      done(failure(Status::cancelled("redis_stream: protocol shut down or worker removed"), true));
      return;
    }
    std::weak_ptr<Broker> weak_broker = broker;
    std::string what = "redis_stream: no reply from worker " + worker.id + " (stream " + target->name + " on " +
                       target->endpoint() + ") within " + describe_wait(wait_ms);
    auto on_timeout = [weak_broker, what, endpoint = target->endpoint()] {
      std::string message = what;
      auto b = weak_broker.lock();
      if (!b) return message;
      if (std::string trouble = b->trouble(); !trouble.empty()) {
        message += "; broker " + endpoint + " unreachable: " + trouble;
      }
      return message;
    };
    if (!core.calls().begin(request.call_id, deadline, std::move(on_timeout), std::move(done))) {
      core.release_held(request.call_id);  // its reply was already here
      return;
    }
    const int64_t now_ms = clock.now_ms();
    RedisPublisher::Job job;
    job.call_id = request.call_id;
    job.stream = target->name;
    job.payload = async_request_payload(worker, request, core.settings().redis_reply_stream(), now_ms,
                                        now_ms + wait_ms);
    job.deadline_ms = now_ms + wait_ms;
    // The publisher skips a call whose request is already queued (sent before a restart).
    broker->publisher->enqueue(std::move(job));
  }

  void attach(const WorkerInfo& worker) override {
    attach_worker(core_->brokers(), worker, "redis", kDefaultPort);
    // Shared runs: read the reply stream from now on, so that replies for
    // calls another instance took over are passed on without waiting for
    // this instance's first call.
    if (core_->settings().options.shared_runs) {
      if (Result<BrokerTarget> target = parse_broker_url(worker.url, "redis", kDefaultPort); target.ok()) {
        (void)core_->broker_for(*target);
      }
    }
  }
  void detach(const WorkerInfo& worker) override { detach_worker(core_->brokers(), worker, "redis", kDefaultPort); }

  void cancel(const std::string& call_id) override {
    AsyncCalls::Cancelled c = core_->calls().cancel(call_id);
    // Over at its deadline: forget it. Abandoned otherwise (a shutdown): keep
    // its record, so a restarted orch waits for its reply.
    if (c.was_waiting && c.past_deadline) core_->forget(call_id);
  }

  Status probe(const WorkerInfo& worker, milliseconds timeout) override {
    Result<BrokerTarget> target = parse_broker_url(worker.url, "redis", kDefaultPort);
    if (!target.ok()) return target.status();
    SigpipeGuard sigpipe;
    ORCH_ASSIGN_OR_RETURN(std::unique_ptr<RedisClient> client,
                          RedisClient::connect(target->host, target->port, timeout, timeout));
    ORCH_ASSIGN_OR_RETURN(RedisValue pong, client->command({"PING"}));
    if (pong.is_error()) return Status::unavailable("redis: PING failed: " + pong.str);
    return Status();
  }

 private:
  std::shared_ptr<RedisCore> core_;
};

}  // namespace

Result<std::shared_ptr<WorkerProtocol>> make_redis_stream_protocol(const AsyncSettings& settings) {
  auto core = std::make_shared<RedisCore>(settings);
  core->init();
  return std::shared_ptr<WorkerProtocol>(std::make_shared<RedisStreamProtocol>(std::move(core)));
}

}  // namespace orch::internal
