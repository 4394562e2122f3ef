// SPDX-License-Identifier: MIT
// MqttSession: one persistent libmosquitto connection per broker.
#include "workers/async/mqtt_session.h"
#include "orch/thread_guard.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace orch::internal {
namespace {

std::once_flag g_lib_init;
constexpr int kUnspecifiedError = 0x80;  // MQTT v5 reason code

// The session whose network thread is running the current callback, if any.
thread_local const MqttSession* tl_network_session = nullptr;

class NetworkScope {
 public:
  explicit NetworkScope(const MqttSession* session) : previous_(tl_network_session) {
    tl_network_session = session;
  }
  ~NetworkScope() { tl_network_session = previous_; }
  NetworkScope(const NetworkScope&) = delete;
  NetworkScope& operator=(const NetworkScope&) = delete;

 private:
  const MqttSession* previous_;
};

std::string error_text(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

}  // namespace

MqttSession::MqttSession(Config config, Handlers handlers)
    : config_(std::move(config)), handlers_(std::move(handlers)) {
  mosq_ = mosquitto_new(config_.client_id.c_str(), !config_.persistent, this);
  if (!mosq_) {
    last_error_ = "cannot create an MQTT client (" + error_text(MOSQ_ERR_ERRNO) + ")";
    return;
  }
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_reconnect_delay_set(mosq_, config_.reconnect_min_s, config_.reconnect_max_s, true);
  // The callbacks run on libmosquitto's network thread, called from C: an
  // exception must stop in them (see thread_guard.h).
  mosquitto_connect_v5_callback_set(mosq_, [](mosquitto* m, void* self, int rc, int flags, const mqtt5__property* p) {
    run_guarded("mqtt on_connect", [&] { on_connect(m, self, rc, flags, p); });
  });
  mosquitto_disconnect_v5_callback_set(mosq_, [](mosquitto* m, void* self, int rc, const mqtt5__property* p) {
    run_guarded("mqtt on_disconnect", [&] { on_disconnect(m, self, rc, p); });
  });
  mosquitto_subscribe_v5_callback_set(
      mosq_, [](mosquitto* m, void* self, int mid, int count, const int* granted, const mqtt5__property* p) {
        run_guarded("mqtt on_subscribe", [&] { on_subscribe(m, self, mid, count, granted, p); });
      });
  mosquitto_publish_v5_callback_set(mosq_, [](mosquitto* m, void* self, int mid, int reason, const mqtt5__property* p) {
    run_guarded("mqtt on_publish", [&] { on_publish(m, self, mid, reason, p); });
  });
  mosquitto_message_v5_callback_set(
      mosq_, [](mosquitto* m, void* self, const mosquitto_message* msg, const mqtt5__property* p) {
        run_guarded("mqtt on_message", [&] { on_message(m, self, msg, p); });
      });
}

std::shared_ptr<MqttSession> MqttSession::start(Config config, Handlers handlers) {
  std::call_once(g_lib_init, [] { mosquitto_lib_init(); });
  std::shared_ptr<MqttSession> session(new MqttSession(std::move(config), std::move(handlers)));
  if (session->mosq_) {
    // The starter touches only the session, which joins it before going away.
    MqttSession* raw = session.get();
    session->starter_ = std::thread([raw] { run_guarded("mqtt session start", [raw] { raw->run_starter(); }); });
  }
  return session;
}

MqttSession::~MqttSession() { teardown(); }

void MqttSession::run_starter() {
  mosquitto_property* props = nullptr;
  if (config_.persistent) {
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, config_.session_expiry_s);
  }
  // Blocking TCP connect; on failure the network thread keeps retrying with
  // back-off (libmosquitto keeps the host and the CONNECT properties).
  int rc = mosquitto_connect_bind_v5(mosq_, config_.host.c_str(), config_.port, config_.keepalive_s, nullptr, props);
  mosquitto_property_free_all(&props);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rc != MOSQ_ERR_SUCCESS) last_error_ = "cannot connect: " + error_text(rc);
    if (stopping_) return;
  }
  rc = mosquitto_loop_start(mosq_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rc != MOSQ_ERR_SUCCESS) {
      last_error_ = "cannot start the MQTT network thread: " + error_text(rc);
      return;
    }
    loop_running_ = true;
  }
  flush_unsent();
}

void MqttSession::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (tl_network_session == this) {
    // The network thread cannot join itself: finish on a helper thread, which
    // keeps the session alive until then.
    std::thread([self = shared_from_this()] { run_guarded("mqtt session stop", [&] { self->teardown(); }); }).detach();
    return;
  }
  teardown();
}

void MqttSession::teardown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (torn_down_) return;
    torn_down_ = true;
  }
  cv_.notify_all();
  if (starter_.joinable()) starter_.join();
  if (!mosq_) return;
  mosquitto_disconnect_v5(mosq_, MQTT_RC_NORMAL_DISCONNECTION, nullptr);
  bool loop_running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loop_running = loop_running_;
  }
  if (loop_running) mosquitto_loop_stop(mosq_, false);
  mosquitto_destroy(mosq_);
  mosq_ = nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  connected_ = false;
  last_error_ = "stopped";
}

Status MqttSession::publish(Publish message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !mosq_) return Status::unavailable("MQTT session stopped: " + last_error_);
  }
  return send(std::move(message));
}

void MqttSession::keep_unsent(Publish message, bool flush_if_ready) {
  Unsent u;
  if (message.expiry_s > 0) u.expires = std::chrono::steady_clock::now() + std::chrono::seconds(message.expiry_s);
  u.message = std::move(message);
  bool ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unsent_.push_back(std::move(u));
    ready = loop_running_ && connected_;
  }
  // A (re)connect may have flushed just before we queued: flush again.
  if (ready && flush_if_ready) flush_unsent();
}

void MqttSession::flush_unsent() {
  std::vector<Unsent> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !loop_running_ || !connected_) return;
    queued.swap(unsent_);
  }
  const auto now = std::chrono::steady_clock::now();
  for (Unsent& u : queued) {
    if (u.message.expiry_s > 0) {
      if (u.expires <= now) continue;  // its call is over; the worker need not see it
      auto left = std::chrono::duration_cast<std::chrono::seconds>(u.expires - now).count() + 1;
      u.message.expiry_s = static_cast<uint32_t>(left);
    }
    std::string tag = u.message.tag;
    Status sent = send(std::move(u.message));
    // Its publish() already returned OK: report the failure like a refusal.
    if (!sent.ok() && handlers_.on_published) handlers_.on_published(tag, kUnspecifiedError);
  }
}

Status MqttSession::send(Publish message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::unavailable("MQTT session stopped");
  }
  bool ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready = loop_running_ && connected_;
  }
  if (!ready) {
    keep_unsent(std::move(message), true);
    return Status();
  }
  mosquitto_property* props = nullptr;
  if (!message.response_topic.empty()) {
    mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, message.response_topic.c_str());
  }
  if (!message.correlation.empty()) {
    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, message.correlation.data(),
                                  static_cast<uint16_t>(message.correlation.size()));
  }
  mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, "application/json");
  mosquitto_property_add_byte(&props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1);
  if (message.expiry_s > 0) {
    mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, message.expiry_s);
  }
  int mid = 0;
  int rc = mosquitto_publish_v5(mosq_, &mid, message.topic.c_str(), static_cast<int>(message.payload.size()),
                                message.payload.data(), 1, message.retain, props);
  mosquitto_property_free_all(&props);
  switch (rc) {
    case MOSQ_ERR_SUCCESS:
      break;
    case MOSQ_ERR_NO_CONN:
      // The connection just dropped: the next connect sends it.
      keep_unsent(std::move(message), false);
      return Status();
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_QOS_NOT_SUPPORTED:
      return Status::invalid_argument("MQTT publish to " + message.topic + " refused: " + error_text(rc));
    default:
      return Status::unavailable("MQTT publish to " + message.topic + " failed: " + error_text(rc));
  }
  int reason = 0;
  bool acked = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto early = early_acks_.find(mid);
    if (early != early_acks_.end()) {
      acked = true;
      reason = early->second;
      early_acks_.erase(early);
    } else {
      tags_[mid] = message.tag;
    }
  }
  if (acked && handlers_.on_published) handlers_.on_published(message.tag, reason);
  return Status();
}

bool MqttSession::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_;
}

std::string MqttSession::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_ ? std::string() : last_error_;
}

bool MqttSession::wait_connected(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return connected_ || stopping_; });
  return connected_;
}

void MqttSession::on_connect(struct mosquitto* mosq, void* self, int rc, int flags, const mqtt5__property* props) {
  (void)flags;
  (void)props;
  auto* s = static_cast<MqttSession*>(self);
  NetworkScope scope(s);
  if (rc != 0) {
    std::lock_guard<std::mutex> lock(s->mu_);
    s->connected_ = false;
    s->last_error_ = std::string("connection refused: ") + mosquitto_reason_string(rc);
    return;
  }
  if (!s->config_.reply_topic.empty()) {
    // Subscribe on every connect (a broker that lost the session lost the
    // subscription too); requests wait for the SUBACK.
    int mid = 0;
    int sub;
    if (s->config_.extra_topic.empty()) {
      sub = mosquitto_subscribe_v5(mosq, &mid, s->config_.reply_topic.c_str(), 1, 0, nullptr);
    } else {
      char* topics[2] = {const_cast<char*>(s->config_.reply_topic.c_str()),
                         const_cast<char*>(s->config_.extra_topic.c_str())};
      sub = mosquitto_subscribe_multiple(mosq, &mid, 2, topics, 1, 0, nullptr);
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    s->subscribe_mid_ = mid;
    s->last_error_ = sub == MOSQ_ERR_SUCCESS ? "subscribing to " + s->config_.reply_topic
                                             : "cannot subscribe to " + s->config_.reply_topic + ": " +
                                                   error_text(sub);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(s->mu_);
    s->connected_ = true;
    s->last_error_.clear();
  }
  s->cv_.notify_all();
  s->flush_unsent();
}

void MqttSession::on_subscribe(struct mosquitto*, void* self, int mid, int count, const int* granted,
                               const mqtt5__property* props) {
  (void)props;
  auto* s = static_cast<MqttSession*>(self);
  NetworkScope scope(s);
  {
    std::lock_guard<std::mutex> lock(s->mu_);
    if (mid != s->subscribe_mid_) return;
    s->subscribe_mid_ = -1;
    const int wanted = s->config_.extra_topic.empty() ? 1 : 2;
    bool refused = count < wanted;
    for (int i = 0; i < count && i < wanted; ++i) refused = refused || granted[i] > 2;
    if (refused) {
      s->last_error_ = "the broker refused the subscription to " + s->config_.reply_topic;
      return;
    }
    s->connected_ = true;
    s->last_error_.clear();
  }
  s->cv_.notify_all();
  s->flush_unsent();
  if (s->handlers_.on_subscribed) s->handlers_.on_subscribed();
}

void MqttSession::on_disconnect(struct mosquitto*, void* self, int rc, const mqtt5__property* props) {
  (void)props;
  auto* s = static_cast<MqttSession*>(self);
  NetworkScope scope(s);
  std::lock_guard<std::mutex> lock(s->mu_);
  s->connected_ = false;
  s->subscribe_mid_ = -1;
  s->last_error_ = rc == 0 ? "disconnected" : "connection lost (" + error_text(rc) + ")";
}

void MqttSession::on_publish(struct mosquitto*, void* self, int mid, int reason, const mqtt5__property* props) {
  (void)props;
  auto* s = static_cast<MqttSession*>(self);
  NetworkScope scope(s);
  std::string tag;
  {
    std::lock_guard<std::mutex> lock(s->mu_);
    auto it = s->tags_.find(mid);
    if (it == s->tags_.end()) {
      s->early_acks_[mid] = reason;
      return;
    }
    tag = std::move(it->second);
    s->tags_.erase(it);
  }
  if (s->handlers_.on_published) s->handlers_.on_published(tag, reason);
}

void MqttSession::on_message(struct mosquitto*, void* self, const struct mosquitto_message* msg,
                             const mqtt5__property* props) {
  auto* s = static_cast<MqttSession*>(self);
  NetworkScope scope(s);
  Message m;
  m.topic = msg->topic ? msg->topic : "";
  if (msg->payload && msg->payloadlen > 0) {
    m.payload.assign(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen));
  }
  void* data = nullptr;
  uint16_t length = 0;
  if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &data, &length, false) && data) {
    m.correlation.assign(static_cast<const char*>(data), length);
    std::free(data);
  }
  if (s->handlers_.on_message) s->handlers_.on_message(std::move(m));
}

}  // namespace orch::internal
