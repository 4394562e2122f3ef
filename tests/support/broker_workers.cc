// SPDX-License-Identifier: MIT
#include "support/broker_workers.h"

#include <hiredis/hiredis.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace orch::testing {
namespace {

using namespace std::chrono_literals;

std::string random_suffix() {
  static std::atomic<unsigned> counter{0};
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
}

}  // namespace

// ---- TestWorkerBase ----

void TestWorkerBase::hold(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  holding_ = on;
}

void TestWorkerBase::release_held() {
  std::vector<BrokerRequest> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held.swap(held_);
  }
  for (const BrokerRequest& r : held) answer(r);
}

size_t TestWorkerBase::drop_held(const std::function<bool(const BrokerRequest&)>& which) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t before = held_.size();
  held_.erase(std::remove_if(held_.begin(), held_.end(), which), held_.end());
  return before - held_.size();
}

void TestWorkerBase::set_reply(ReplyMaker maker) {
  std::lock_guard<std::mutex> lock(mu_);
  maker_ = std::move(maker);
}

void TestWorkerBase::set_duplicates(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  duplicates_ = on;
}

std::vector<BrokerRequest> TestWorkerBase::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

bool TestWorkerBase::wait_for_requests(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

size_t TestWorkerBase::replies_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return replies_;
}

bool TestWorkerBase::accept(const BrokerRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_.push_back(request);
  cv_.notify_all();
  if (holding_) {
    held_.push_back(request);
    return false;
  }
  return true;
}

std::string TestWorkerBase::reply_body(const BrokerRequest& request) const {
  ReplyMaker maker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    maker = maker_;
  }
  Value body = maker ? maker(request)
                     : Value::object({{"response", "echo: " + request.payload["message"].get_string("")}});
  body.set("correlation_id", request.correlation_id);
  return body.to_json();
}

void TestWorkerBase::answer(const BrokerRequest& request) {
  const std::string body = reply_body(request);
  bool twice;
  {
    std::lock_guard<std::mutex> lock(mu_);
    twice = duplicates_;
    replies_ += twice ? 2 : 1;
  }
  send_reply(request, body);
  if (twice) send_reply(request, body);
}

// ---- MqttTestWorker ----

struct MqttWorkerCallbacks {
  static void on_connect(struct mosquitto* m, void* self, int rc) {
    auto* w = static_cast<MqttTestWorker*>(self);
    if (rc == 0) mosquitto_subscribe(m, nullptr, w->topic_.c_str(), 1);
  }
  static void on_subscribe(struct mosquitto*, void* self, int, int, const int*) {
    auto* w = static_cast<MqttTestWorker*>(self);
    std::lock_guard<std::mutex> lock(w->mu_);
    ++w->subscriptions_;
    w->cv_.notify_all();
  }
  static void on_message(struct mosquitto*, void* self, const struct mosquitto_message* msg,
                         const mosquitto_property* props) {
    auto* w = static_cast<MqttTestWorker*>(self);
    BrokerRequest r;
    std::string payload(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen));
    auto parsed = parse_json(payload);
    if (parsed.ok()) r.payload = std::move(parsed).value();
    void* data = nullptr;
    uint16_t len = 0;
    char* topic = nullptr;
    if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &data, &len, false) && data) {
      r.correlation_id.assign(static_cast<const char*>(data), len);
      std::free(data);
      r.v5_properties = true;
    }
    if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &topic, false) && topic) {
      r.reply_to = topic;
      std::free(topic);
    } else {
      r.v5_properties = false;
    }
    if (r.correlation_id.empty()) r.correlation_id = r.payload["correlation_id"].get_string("");
    if (r.reply_to.empty()) r.reply_to = r.payload["reply_to"].get_string("");
    if (w->accept(r)) w->answer(r);
  }
};

MqttTestWorker::MqttTestWorker(int port, std::string topic, bool v311) : topic_(std::move(topic)), v311_(v311) {
  mosquitto_lib_init();
  const std::string id = "test-worker-" + random_suffix();
  mosq_ = mosquitto_new(id.c_str(), false, this);
  if (!mosq_) throw std::runtime_error("mosquitto_new failed");
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, v311_ ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V5);
  mosquitto_reconnect_delay_set(mosq_, 1, 2, false);
  mosquitto_connect_callback_set(mosq_, &MqttWorkerCallbacks::on_connect);
  mosquitto_subscribe_callback_set(mosq_, &MqttWorkerCallbacks::on_subscribe);
  mosquitto_message_v5_callback_set(mosq_, &MqttWorkerCallbacks::on_message);
  mosquitto_property* props = nullptr;
  if (!v311_) mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 3600);
  int rc = mosquitto_connect_bind_v5(mosq_, "127.0.0.1", port, 30, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) throw std::runtime_error(std::string("worker connect: ") + mosquitto_strerror(rc));
  mosquitto_loop_start(mosq_);
  if (!wait_subscribed(10s)) throw std::runtime_error("test worker did not subscribe");
}

MqttTestWorker::~MqttTestWorker() {
  mosquitto_disconnect(mosq_);
  mosquitto_loop_stop(mosq_, false);
  mosquitto_destroy(mosq_);
}

bool MqttTestWorker::wait_subscribed(std::chrono::milliseconds timeout, int count) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this, count] { return subscriptions_ >= count; });
}

int MqttTestWorker::subscriptions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscriptions_;
}

void MqttTestWorker::send_reply(const BrokerRequest& request, const std::string& body) {
  mosquitto_property* props = nullptr;
  if (!v311_) {
    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, request.correlation_id.data(),
                                  static_cast<uint16_t>(request.correlation_id.size()));
  }
  mosquitto_publish_v5(mosq_, nullptr, request.reply_to.c_str(), static_cast<int>(body.size()), body.data(), 1,
                       false, props);
  mosquitto_property_free_all(&props);
}

// ---- RedisTestWorker ----

RedisTestWorker::RedisTestWorker(int port, std::string stream) : port_(port), stream_(std::move(stream)) {
  thread_ = std::thread([this] { run(); });
  if (!wait_ready(10s)) throw std::runtime_error("redis test worker did not start");
}

RedisTestWorker::~RedisTestWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool RedisTestWorker::wait_ready(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return ready_; });
}

void RedisTestWorker::send_reply(const BrokerRequest& request, const std::string& body) {
  std::lock_guard<std::mutex> lock(mu_);
  outbox_.push_back(Outgoing{request.reply_to, request.correlation_id, body});
}

void RedisTestWorker::run() {
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  redisContext* c = nullptr;
  auto command = [&c](std::vector<std::string> args) -> redisReply* {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
  };
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    if (!c) {
      struct timeval tv = {2, 0};
      c = redisConnectWithTimeout("127.0.0.1", port_, tv);
      if (!c || c->err) {
        if (c) redisFree(c);
        c = nullptr;
        std::this_thread::sleep_for(100ms);
        continue;
      }
      redisSetTimeout(c, tv);
      if (redisReply* r = command({"XGROUP", "CREATE", stream_, "workers", "0", "MKSTREAM"})) freeReplyObject(r);
      std::lock_guard<std::mutex> lock(mu_);
      ready_ = true;
      cv_.notify_all();
    }
    // Send what is due.
    std::vector<Outgoing> outbox;
    {
      std::lock_guard<std::mutex> lock(mu_);
      outbox.swap(outbox_);
    }
    bool broken = false;
    for (const Outgoing& o : outbox) {
      redisReply* r = command({"XADD", o.stream, "*", "correlation_id", o.correlation_id, "payload", o.body});
      if (!r) {
        broken = true;
        break;
      }
      freeReplyObject(r);
    }
    redisReply* r = broken ? nullptr
                           : command({"XREADGROUP", "GROUP", "workers", "w1", "COUNT", "50", "BLOCK", "100",
                                      "STREAMS", stream_, ">"});
    if (!r) {
      redisFree(c);
      c = nullptr;
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      // NOGROUP: the broker restarted empty.
      freeReplyObject(r);
      if (redisReply* g = command({"XGROUP", "CREATE", stream_, "workers", "0", "MKSTREAM"})) freeReplyObject(g);
      continue;
    }
    std::vector<std::string> ids;
    if (r->type == REDIS_REPLY_ARRAY) {
      for (size_t s = 0; s < r->elements; ++s) {
        redisReply* entries = r->element[s]->element[1];
        for (size_t e = 0; e < entries->elements; ++e) {
          redisReply* entry = entries->element[e];
          ids.emplace_back(entry->element[0]->str, entry->element[0]->len);
          BrokerRequest req;
          redisReply* fields = entry->element[1];
          for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            std::string key(fields->element[f]->str, fields->element[f]->len);
            std::string value(fields->element[f + 1]->str, fields->element[f + 1]->len);
            if (key == "correlation_id") req.correlation_id = value;
            if (key == "reply_to") req.reply_to = value;
            if (key == "payload") {
              auto parsed = parse_json(value);
              if (parsed.ok()) req.payload = std::move(parsed).value();
            }
          }
          if (req.correlation_id.empty()) req.correlation_id = req.payload["correlation_id"].get_string("");
          if (req.reply_to.empty()) req.reply_to = req.payload["reply_to"].get_string("");
          if (accept(req)) answer(req);
        }
      }
    }
    freeReplyObject(r);
    for (const std::string& id : ids) {
      if (redisReply* a = command({"XACK", stream_, "workers", id})) freeReplyObject(a);
    }
  }
  if (c) redisFree(c);
}

}  // namespace orch::testing
