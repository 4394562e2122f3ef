// SPDX-License-Identifier: MIT
//
// Test workers for the asynchronous protocols, written against libmosquitto
// and hiredis directly (independently of orch's own clients): they take
// requests from a topic or stream, record them, and reply to the reply
// address with the correlation id, the way docs/async-workers.md tells
// worker authors to.
//
// By default a request is answered at once with {"response": "echo:
// <message>"}. hold(true) keeps requests unanswered until release_held();
// set_reply() changes the reply body; set_duplicates(true) sends every reply
// twice (QoS 1 style redelivery).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "orch/value.h"

struct mosquitto;

namespace orch::testing {

// A request as a worker received it.
struct BrokerRequest {
  std::string correlation_id;  // from the v5 property or stream field, else the payload
  std::string reply_to;        // likewise
  Value payload;               // the JSON request body
  bool v5_properties = false;  // MQTT: correlation data and response topic came as properties
};

// The reply body for a request (the worker adds correlation_id).
using ReplyMaker = std::function<Value(const BrokerRequest&)>;

class TestWorkerBase {
 public:
  virtual ~TestWorkerBase() = default;
  void hold(bool on);
  // Answers every held request now.
  void release_held();
  // Forgets the held requests `which` picks, without answering them (work
  // lost); returns how many.
  size_t drop_held(const std::function<bool(const BrokerRequest&)>& which);
  void set_reply(ReplyMaker maker);
  void set_duplicates(bool on);
  std::vector<BrokerRequest> requests() const;
  bool wait_for_requests(size_t n, std::chrono::milliseconds timeout) const;
  size_t replies_sent() const;

 protected:
  // Records `request`; returns true when it should be answered now.
  bool accept(const BrokerRequest& request);
  std::string reply_body(const BrokerRequest& request) const;
  // Sends one reply (subclass transport).
  virtual void send_reply(const BrokerRequest& request, const std::string& body) = 0;
  void answer(const BrokerRequest& request);

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<BrokerRequest> requests_;
  std::vector<BrokerRequest> held_;
  bool holding_ = false;
  bool duplicates_ = false;
  size_t replies_ = 0;
  ReplyMaker maker_;
};

// Subscribes to `topic` (QoS 1, persistent session) over MQTT v5, or v3.1.1
// (then the correlation id and reply topic come from the payload).
class MqttTestWorker : public TestWorkerBase {
 public:
  MqttTestWorker(int port, std::string topic, bool v311 = false);
  ~MqttTestWorker() override;
  // Waits until the worker subscribed `count` times (once per connection).
  bool wait_subscribed(std::chrono::milliseconds timeout, int count = 1) const;
  int subscriptions() const;

 private:
  friend struct MqttWorkerCallbacks;
  void send_reply(const BrokerRequest& request, const std::string& body) override;

  std::string topic_;
  bool v311_;
  struct mosquitto* mosq_ = nullptr;
  int subscriptions_ = 0;
};

// Reads `stream` through consumer group "workers" (XREADGROUP ... BLOCK),
// acknowledges what it answered, recreates the group when Redis lost it.
class RedisTestWorker : public TestWorkerBase {
 public:
  RedisTestWorker(int port, std::string stream);
  ~RedisTestWorker() override;
  bool wait_ready(std::chrono::milliseconds timeout) const;

 private:
  void send_reply(const BrokerRequest& request, const std::string& body) override;
  void run();

  int port_;
  std::string stream_;
  std::thread thread_;
  bool stopping_ = false;
  bool ready_ = false;
  struct Outgoing {
    std::string stream;
    std::string correlation_id;
    std::string body;
  };
  std::vector<Outgoing> outbox_;  // replies to XADD
};

}  // namespace orch::testing
