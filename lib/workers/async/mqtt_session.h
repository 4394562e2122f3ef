// SPDX-License-Identifier: MIT
//
// MqttSession: one persistent MQTT v5 client connection to one broker
// (libmosquitto, threaded with mosquitto_loop_start). It subscribes to a reply
// topic at QoS 1 on every (re)connect, reconnects with exponential back-off,
// and publishes QoS 1 requests with v5 properties. Incoming messages and
// PUBACKs are reported through handlers on the network thread.
//
// start() returns at once: the first (blocking) TCP connect runs on a helper
// thread. Publishes made before the connection is up are queued and sent once
// it is.
//
// Thread-safety: every method may be called from any thread, including from
// the handlers. stop() may even run on the network thread (it then finishes
// on a helper thread).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "orch/status.h"

struct mosquitto;
struct mosquitto_message;
struct mqtt5__property;

namespace orch::internal {

class MqttSession : public std::enable_shared_from_this<MqttSession> {
 public:
  struct Config {
    std::string host;
    int port = 1883;
    std::string client_id;
    // Persistent session (clean_start = false) kept `session_expiry_s` by the
    // broker while disconnected; otherwise a clean session.
    bool persistent = false;
    uint32_t session_expiry_s = 0;
    std::string reply_topic;  // subscribed at QoS 1; empty: none
    std::string extra_topic;  // subscribed with it (same SUBSCRIBE) when set
    int keepalive_s = 30;
    unsigned reconnect_min_s = 1;
    unsigned reconnect_max_s = 5;
  };
  struct Message {
    std::string topic;
    std::string payload;
    std::string correlation;  // v5 correlation data, empty when absent
  };
  struct Handlers {
    std::function<void(Message)> on_message;
    // The broker acknowledged (PUBACK) the publish tagged `tag` with a v5
    // reason code (0 success, 0x10 no matching subscribers, >= 0x80 refused).
    std::function<void(const std::string& tag, int reason)> on_published;
    // Connected and subscribed (after every (re)connect).
    std::function<void()> on_subscribed;
  };
  struct Publish {
    std::string topic;
    std::string payload;
    std::string response_topic;
    std::string correlation;
    uint32_t expiry_s = 0;  // message expiry interval from now; 0: none
    std::string tag;        // reported by on_published
    bool retain = false;
  };

  static std::shared_ptr<MqttSession> start(Config config, Handlers handlers);
  ~MqttSession();
  MqttSession(const MqttSession&) = delete;
  MqttSession& operator=(const MqttSession&) = delete;

  // Queues a QoS 1 publish. Unavailable after stop(); InvalidArgument when
  // libmosquitto rejects it (bad topic, payload too large).
  Status publish(Publish message);
  // Connected and subscribed to the reply topic: requests go out (before
  // that they wait, so no reply can come before the subscription).
  bool connected() const;
  // Why the session is not connected (empty while it is).
  std::string last_error() const;
  bool wait_connected(std::chrono::milliseconds timeout) const;
  // Disconnects (the broker keeps a persistent session) and ends the network
  // thread. Idempotent.
  void stop();

 private:
  MqttSession(Config config, Handlers handlers);
  void run_starter();
  void teardown();
  // Hands `message` to libmosquitto (or keeps it for the next connect).
  Status send(Publish message);
  void keep_unsent(Publish message, bool flush_if_ready);
  void flush_unsent();

  static void on_connect(struct mosquitto*, void* self, int rc, int flags, const mqtt5__property* props);
  static void on_disconnect(struct mosquitto*, void* self, int rc, const mqtt5__property* props);
  static void on_subscribe(struct mosquitto*, void* self, int mid, int count, const int* granted,
                           const mqtt5__property* props);
  static void on_publish(struct mosquitto*, void* self, int mid, int reason, const mqtt5__property* props);
  static void on_message(struct mosquitto*, void* self, const struct mosquitto_message* msg,
                         const mqtt5__property* props);

  const Config config_;
  const Handlers handlers_;
  struct mosquitto* mosq_ = nullptr;
  std::thread starter_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool loop_running_ = false;   // network thread started; publishes go to libmosquitto
  bool stopping_ = false;
  bool torn_down_ = false;
  bool connected_ = false;      // connected and subscribed (see connected())
  int subscribe_mid_ = -1;      // the reply-topic SUBSCRIBE in flight
  std::string last_error_ = "not connected yet";
  struct Unsent {
    Publish message;
    std::chrono::steady_clock::time_point expires;  // when expiry_s > 0
  };
  std::vector<Unsent> unsent_;  // waiting for the connection (and subscription)
  std::unordered_map<int, std::string> tags_;          // message id -> tag, until PUBACK
  std::unordered_map<int, int> early_acks_;            // PUBACKs that beat the bookkeeping -> reason
};

}  // namespace orch::internal
