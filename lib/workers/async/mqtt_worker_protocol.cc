// SPDX-License-Identifier: MIT
// The mqtt worker protocol: requests published with a correlation id, replies
// matched by one persistent listener connection per broker.
#include "workers/async/mqtt_worker_protocol.h"
#include "workers/worker_reply.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>

#include "workers/async/async_calls.h"
#include "workers/async/async_wire.h"
#include "workers/async/broker_sessions.h"
#include "workers/async/call_ledger.h"
#include "workers/async/mqtt_call_routes.h"
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
      if (auto self = weak.lock()) {
        self->ledger_->remove(call_id);
        self->clear_route(call_id);
      }
    });
  }

  bool shared() const { return settings_.options.shared_runs; }

  // Shared runs: runs `fn` once the route book of `endpoint`'s broker has
  // the routes retained there (now, when it has).
  void run_when_ready(const std::string& endpoint, const std::string& call_id, std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      Readiness& r = readiness_[endpoint];
      if (!r.ready) {
        // While the broker stays unreachable, calls that ended meanwhile go.
        if (r.waiting.size() >= 1000 && r.waiting.size() % 1000 == 0) {
          r.waiting.erase(std::remove_if(r.waiting.begin(), r.waiting.end(),
                                         [this](const auto& w) { return !calls_->is_waiting(w.first); }),
                          r.waiting.end());
        }
        r.waiting.emplace_back(call_id, std::move(fn));
        return;
      }
    }
    fn();
  }
  MqttRouteBook& routes() { return routes_; }

  // Shared runs: publishes `call_id`'s route (retained) on `session`, to
  // expire a while after its deadline.
  void publish_route(MqttSession& session, const std::string& call_id, const CallRoute& route) {
    const int64_t now_ms = clock_->now_ms();
    routes_.set(call_id, route, now_ms);
    MqttSession::Publish message;
    message.topic = mqtt_route_topic(call_id);
    message.payload = format_call_route(route);
    message.retain = true;
    const int64_t left_ms = std::max<int64_t>(route.deadline_ms - now_ms, 0) + settings_.options.orphan_ttl_ms;
    message.expiry_s = static_cast<uint32_t>(std::min<int64_t>(std::max<int64_t>(1, left_ms / 1000), 0x7FFFFFFF));
    (void)session.publish(std::move(message));  // best effort: without it a taker-over sends again
  }

  // Shared runs: clears the route of a call this instance owned (it is
  // over); `any_owner`: whoever the route names.
  void clear_route(const std::string& call_id, bool any_owner = false) {
    if (!shared()) return;
    std::optional<CallRoute> route = routes_.find(call_id);
    if (!route || (!any_owner && route->owner != settings_.instance)) return;
    routes_.erase(call_id);
    MqttSession::Publish message;
    message.topic = mqtt_route_topic(call_id);
    message.retain = true;  // an empty retained message removes the retained one
    for (const auto& session : sessions_.all()) (void)session->publish(message);
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
    if (shared()) {
      // Every instance's replies (kept as orphans for a later owner) and every call's route.
      config.reply_topic = std::string(kMqttReplyPrefix) + "+";
      config.extra_topic = std::string(kMqttRoutePrefix) + "+";
    }
    std::weak_ptr<MqttCore> weak = weak_from_this();
    MqttSession::Handlers handlers;
    handlers.on_message = [weak](MqttSession::Message m) {
      if (auto self = weak.lock()) self->on_message(std::move(m));
    };
    handlers.on_published = [weak](const std::string& call_id, int reason) {
      if (auto self = weak.lock()) self->on_published(call_id, reason);
    };
    if (shared()) {
      const std::string endpoint = target.endpoint();
      handlers.on_message = [weak, endpoint](MqttSession::Message m) {
        auto self = weak.lock();
        if (!self) return;
        if (m.topic == self->marker_topic()) {
          self->mark_ready(endpoint);
          return;
        }
        self->on_message(std::move(m));
      };
      handlers.on_subscribed = [weak, endpoint] {
        auto self = weak.lock();
        if (!self) return;
        // The broker sends the retained routes before anything published
        // after the SUBACK: when this comes back, the route book is complete.
        auto session = self->sessions_.find(endpoint);
        MqttSession::Publish marker;
        marker.topic = self->marker_topic();
        marker.payload = "ready";
        if (!session || !session->publish(std::move(marker)).ok()) self->mark_ready(endpoint);  // (cannot tell: go on)
      };
    }
    return MqttSession::start(std::move(config), std::move(handlers));
  }

  void on_message(MqttSession::Message m) {
    if (shared()) {
      if (std::optional<std::string> id = call_id_of_route_topic(m.topic)) {
        const bool cleared = m.payload.empty();
        routes_.heard(*id, m.payload, clock_->now_ms());
        // Its owner has the reply: a copy kept here is of no use any more.
        if (cleared) calls_->discard_orphan(*id);
        return;
      }
      if (m.topic.compare(0, kMqttReplyPrefix.size(), kMqttReplyPrefix) != 0) return;
    } else if (m.topic != settings_.mqtt_reply_topic()) {
      return;
    }
    Result<AsyncReply> parsed = parse_async_reply(m.payload, std::move(m.correlation));
    if (!parsed.ok()) return;  // names no call: not ours to answer
    const std::string id = parsed->correlation_id;
    // Shared runs: another instance's reply is worth keeping (for an instance
    // that takes its run over) only while the call's route is live. (Replies
    // queued for this instance's session come before the retained routes on
    // a reconnect: its own calls are known by its ledger.)
    if (shared() && !calls_->is_waiting(id) && !ledger_->contains(id) && !routes_.find(id)) return;
    AsyncCalls::Delivery delivery = calls_->deliver(id, std::move(parsed->reply));
    // An orphan keeps its record: the call may be dispatched again (restart).
    if (delivery != AsyncCalls::Delivery::kOrphan) ledger_->remove(id);
    // (whoever the route names: this call is over)
    if (delivery == AsyncCalls::Delivery::kDelivered) clear_route(id, true);
  }

  void on_published(const std::string& call_id, int reason) {
    if (call_id.empty()) return;  // a route
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

  std::string marker_topic() const { return mqtt_route_topic("~ready~" + settings_.instance); }

  void mark_ready(const std::string& endpoint) {
    std::vector<std::pair<std::string, std::function<void()>>> waiting;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Readiness& r = readiness_[endpoint];
      r.ready = true;
      waiting.swap(r.waiting);
    }
    for (auto& w : waiting) w.second();
  }

  struct Readiness {
    bool ready = false;
    std::vector<std::pair<std::string, std::function<void()>>> waiting;  // call id, what to do then
  };

  const AsyncSettings settings_;
  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<AsyncCalls> calls_;
  const std::unique_ptr<CallLedger> ledger_;
  std::mutex mu_;
  std::map<std::string, Readiness> readiness_;  // by "host:port", shared runs only
  BrokerSessions<MqttSession> sessions_;  // by "host:port"
  MqttRouteBook routes_;                  // shared runs only
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
      core.clear_route(request.call_id, true);  // (taken over: the route names the old owner)
      return;
    }
    // Published before a restart and still unanswered: only wait for the reply.
    if (core.ledger().contains(request.call_id)) return;
    if (!core.shared()) {
      send(core, *session, worker, request, target->name, wait_ms);
      return;
    }
    std::weak_ptr<MqttCore> weak_core = core_;
    auto decide = [weak_core, weak_session, worker, request, topic = target->name, wait_ms] {
      auto live_core = weak_core.lock();
      auto live_session = weak_session.lock();
      if (!live_core || !live_session || !live_core->calls().is_waiting(request.call_id)) return;
      adopt_or_send(*live_core, *live_session, worker, request, topic, wait_ms);
    };
    core.run_when_ready(target->endpoint(), request.call_id, std::move(decide));
  }

  // Shared runs: a request another instance published (the run was taken
  // over) and still within its deadline is with the worker, whose reply
  // reaches every instance: wait for it instead of sending the request again.
  static void adopt_or_send(MqttCore& core, MqttSession& session, const WorkerInfo& worker,
                            const WorkerRequest& request, const std::string& topic, int64_t wait_ms) {
    const int64_t now_ms = core.clock().now_ms();
    std::optional<CallRoute> route = core.routes().find(request.call_id);
    if (route && route->origin != core.settings().instance && route->deadline_ms > now_ms) {
      core.publish_route(session, request.call_id,
                         CallRoute{core.settings().instance, route->origin, route->deadline_ms});
      core.ledger().add(request.call_id, now_ms);
      return;
    }
    core.publish_route(session, request.call_id,
                       CallRoute{core.settings().instance, core.settings().instance, now_ms + wait_ms});
    send(core, session, worker, request, topic, wait_ms);
  }

  static void send(MqttCore& core, MqttSession& session, const WorkerInfo& worker, const WorkerRequest& request,
                   const std::string& topic, int64_t wait_ms) {
    MqttSession::Publish message;
    message.topic = topic;
    message.response_topic = core.settings().mqtt_reply_topic();
    message.correlation = request.call_id;
    message.tag = request.call_id;
    message.expiry_s = static_cast<uint32_t>(std::max<int64_t>(1, (wait_ms + 999) / 1000));
    const int64_t now_ms = core.clock().now_ms();
    message.payload = async_request_payload(worker, request, message.response_topic, now_ms, now_ms + wait_ms);
    Status sent = session.publish(std::move(message));
    if (!sent.ok()) {
      core.calls().fail(request.call_id, failure(sent, sent.code() != StatusCode::kInvalidArgument));
    }
  }

  void attach(const WorkerInfo& worker) override {
    attach_worker(core_->sessions(), worker, "mqtt", kDefaultPort);
    // Shared runs: connect now, so that the routes are known before a run is taken over.
    if (core_->shared()) {
      if (Result<BrokerTarget> target = parse_broker_url(worker.url, "mqtt", kDefaultPort); target.ok()) {
        (void)core_->session_for(*target);
      }
    }
  }
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
