// SPDX-License-Identifier: MIT
// The mqtt worker protocol: requests published with a correlation id, replies
// matched by one persistent listener connection per broker.
#include "workers/async/mqtt_worker_protocol.h"
#include "workers/worker_reply.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "workers/async/async_calls.h"
#include "workers/async/async_wire.h"
#include "workers/async/broker_sessions.h"
#include "workers/async/call_ledger.h"
#include "workers/async/mqtt_session.h"

namespace orch::internal {
namespace {

using std::chrono::milliseconds;

constexpr int kDefaultPort = 1883;
constexpr int kNoMatchingSubscribers = 0x10;  // MQTT v5 PUBACK reason

// State shared with the sessions' handlers (which hold it weakly).
class MqttCore : public std::enable_shared_from_this<MqttCore> {
 public:
  MqttCore(AsyncSettings settings, std::unique_ptr<CallLedger> ledger)
      : settings_(std::move(settings)),
        clock_(settings_.options.clock),
        calls_(std::make_shared<AsyncCalls>(clock_, milliseconds(settings_.options.orphan_ttl_ms))),
        ledger_(std::move(ledger)) {}

  void init() {
    std::weak_ptr<MqttCore> weak = weak_from_this();
    calls_->set_on_timeout([weak](const std::string& call_id) {
      if (auto self = weak.lock()) self->ledger_->remove(call_id);
    });
  }

  const AsyncSettings& settings() const { return settings_; }
  const Clock& clock() const { return *clock_; }
  AsyncCalls& calls() { return *calls_; }
  CallLedger& ledger() { return *ledger_; }

  BrokerSessions<MqttSession>& sessions() { return sessions_; }

  // The session of `target`'s broker, started on first use; null once stopped
  // or when no worker uses that broker any more (see broker_sessions.h).
  std::shared_ptr<MqttSession> session_for(const BrokerTarget& target) {
    return sessions_.get(target.endpoint(), [&] { return start_session(target); });
  }

  void stop() {
    for (const auto& session : sessions_.close()) session->stop();
  }

 private:
  std::shared_ptr<MqttSession> start_session(const BrokerTarget& target) {
    MqttSession::Config config;
    config.host = target.host;
    config.port = target.port;
    config.client_id = settings_.mqtt_client_id();
    config.persistent = settings_.durable;
    config.session_expiry_s = static_cast<uint32_t>(settings_.options.session_expiry_s);
    config.reply_topic = settings_.mqtt_reply_topic();
    std::weak_ptr<MqttCore> weak = weak_from_this();
    MqttSession::Handlers handlers;
    handlers.on_message = [weak](MqttSession::Message m) {
      if (auto self = weak.lock()) self->on_message(std::move(m));
    };
    handlers.on_published = [weak](const std::string& call_id, int reason) {
      if (auto self = weak.lock()) self->on_published(call_id, reason);
    };
    return MqttSession::start(std::move(config), std::move(handlers));
  }

  void on_message(MqttSession::Message m) {
    if (m.topic != settings_.mqtt_reply_topic()) return;
    Result<AsyncReply> parsed = parse_async_reply(m.payload, std::move(m.correlation));
    if (!parsed.ok()) return;  // names no call: not ours to answer
    const std::string id = parsed->correlation_id;
    AsyncCalls::Delivery delivery = calls_->deliver(id, std::move(parsed->reply));
    // An orphan keeps its record: the call may be dispatched again (restart).
    if (delivery != AsyncCalls::Delivery::kOrphan) ledger_->remove(id);
  }

  void on_published(const std::string& call_id, int reason) {
    if (reason >= 0x80 || reason == kNoMatchingSubscribers) {
      std::string why = reason == kNoMatchingSubscribers ? "no worker is subscribed to the request topic"
                                                         : "the broker refused the request (reason " +
                                                               std::to_string(reason) + ")";
      calls_->fail(call_id, failure(Status::unavailable("mqtt: " + why), true));
      return;
    }
    // The broker has the request: a restart must not send it again.
    if (!calls_->is_waiting(call_id)) return;
    ledger_->add(call_id, clock_->now_ms());
    if (!calls_->is_waiting(call_id)) ledger_->remove(call_id);  // answered meanwhile
  }

  const AsyncSettings settings_;
  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<AsyncCalls> calls_;
  const std::unique_ptr<CallLedger> ledger_;
  BrokerSessions<MqttSession> sessions_;  // by "host:port"
};

class MqttProtocol final : public WorkerProtocol {
 public:
  explicit MqttProtocol(std::shared_ptr<MqttCore> core) : core_(std::move(core)) {}
  ~MqttProtocol() override { core_->stop(); }
  MqttProtocol(const MqttProtocol&) = delete;
  MqttProtocol& operator=(const MqttProtocol&) = delete;

  Status validate(const WorkerInfo& worker) const override {
    return parse_broker_url(worker.url, "mqtt", kDefaultPort).status();
  }

  void call(const WorkerInfo& worker, const WorkerRequest& request, Dispatcher::Callback done) override {
    MqttCore& core = *core_;
    const Clock& clock = core.clock();
    const SteadyTime now = clock.steady_now();
    Result<BrokerCall> started = begin_broker_call(worker, request, "mqtt", kDefaultPort, "mqtt", now,
                                                core.settings().options.default_timeout_ms);
    if (!started.ok()) {
      done(failure(started.status(), false));
      return;
    }
    const BrokerTarget* target = &started->target;
    const SteadyTime deadline = started->deadline;
    const int64_t wait_ms = started->wait_ms;
    std::shared_ptr<MqttSession> session = core.session_for(*target);
    if (!session) {
      done(failure(Status::cancelled("mqtt: protocol shut down or worker removed"), true));
      return;
    }
    for (const std::string& id : core.calls().expire_orphans()) core.ledger().remove(id);
    std::weak_ptr<MqttSession> weak_session = session;
    std::string what = "mqtt: no reply from worker " + worker.id + " (topic " + target->name + " on " +
                       target->endpoint() + ") within " + describe_wait(wait_ms);
    auto on_timeout = [weak_session, what, endpoint = target->endpoint()] {
      std::string message = what;
      auto s = weak_session.lock();
      if (s && !s->connected()) message += "; broker " + endpoint + " unreachable: " + s->last_error();
      return message;
    };
    if (!core.calls().begin(request.call_id, deadline, std::move(on_timeout), std::move(done))) {
      core.ledger().remove(request.call_id);  // its reply was already here
      return;
    }
    // Published before a restart and still unanswered: only wait for the reply.
    if (core.ledger().contains(request.call_id)) return;
    MqttSession::Publish message;
    message.topic = target->name;
    message.response_topic = core.settings().mqtt_reply_topic();
    message.correlation = request.call_id;
    message.tag = request.call_id;
    message.expiry_s = static_cast<uint32_t>(std::max<int64_t>(1, (wait_ms + 999) / 1000));
    const int64_t now_ms = clock.now_ms();
    message.payload = async_request_payload(worker, request, message.response_topic, now_ms, now_ms + wait_ms);
    Status sent = session->publish(std::move(message));
    if (!sent.ok()) {
      core.calls().fail(request.call_id, failure(sent, sent.code() != StatusCode::kInvalidArgument));
    }
  }

  void attach(const WorkerInfo& worker) override { attach_worker(core_->sessions(), worker, "mqtt", kDefaultPort); }
  void detach(const WorkerInfo& worker) override { detach_worker(core_->sessions(), worker, "mqtt", kDefaultPort); }

  void cancel(const std::string& call_id) override {
    AsyncCalls::Cancelled c = core_->calls().cancel(call_id);
    // A call abandoned at its deadline is over; one abandoned otherwise (a
    // shutdown) keeps its record, so a restarted orch waits for its reply.
    if (c.was_waiting && c.past_deadline) core_->ledger().remove(call_id);
  }

  Status probe(const WorkerInfo& worker, milliseconds timeout) override {
    Result<BrokerTarget> target = parse_broker_url(worker.url, "mqtt", kDefaultPort);
    if (!target.ok()) return target.status();
    std::shared_ptr<MqttSession> session = core_->session_for(*target);
    if (!session) return Status::unavailable("mqtt: protocol shut down or worker removed");
    if (session->wait_connected(timeout)) return Status();
    return Status::unavailable("mqtt: broker " + target->endpoint() + " unreachable: " + session->last_error());
  }

 private:
  std::shared_ptr<MqttCore> core_;
};

}  // namespace

Result<std::shared_ptr<WorkerProtocol>> make_mqtt_protocol(const AsyncSettings& settings) {
  ORCH_ASSIGN_OR_RETURN(std::unique_ptr<CallLedger> ledger,
                        CallLedger::open(settings.mqtt_ledger_path(), settings.options.clock->now_ms(),
                                         settings.options.pending_ttl_ms));
  auto core = std::make_shared<MqttCore>(settings, std::move(ledger));
  core->init();
  return std::shared_ptr<WorkerProtocol>(std::make_shared<MqttProtocol>(std::move(core)));
}

}  // namespace orch::internal
