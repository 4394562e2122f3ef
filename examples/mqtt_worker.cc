// SPDX-License-Identifier: MIT
//
// An MQTT worker for orch's `mqtt` protocol (docs/async-workers.md). It
// subscribes to a request topic and answers every request on the reply topic
// the request names, with the request's correlation id:
//
//   mqtt_worker [host] [port] [topic]      (defaults: 127.0.0.1 1883 orch/work)
//
// and in orch: a worker {"id": "echo", "protocol": "mqtt",
// "url": "mqtt://127.0.0.1:1883/orch/work"}.
//
// What a real worker keeps from this one:
//   * a persistent session (fixed client id, clean_start = false, a session
//     expiry) and a QoS 1 subscription, so requests queue while it is down;
//   * the reply goes to the v5 response-topic property (else the payload's
//     reply_to), with the correlation data copied (else the payload's
//     correlation_id), at QoS 1;
//   * QoS 1 means a request can come twice: it answers a correlation id it
//     already answered with the same reply again;
//   * a request whose deadline_ms has passed is skipped: nobody waits for it.
//
// Stop it with Ctrl-C.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "orch/value.h"

namespace {

volatile sig_atomic_t g_stop = 0;

// Replies already sent, by correlation id (a bounded cache for redeliveries).
class ReplyCache {
 public:
  const std::string* find(const std::string& id) {
    auto it = replies_.find(id);
    return it == replies_.end() ? nullptr : &it->second;
  }
  void put(const std::string& id, std::string reply) {
    if (replies_.emplace(id, std::move(reply)).second) order_.push_back(id);
    if (order_.size() > 10000) {
      replies_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  std::map<std::string, std::string> replies_;
  std::deque<std::string> order_;
};

struct Worker {
  std::string topic;
  std::mutex mu;
  ReplyCache cache;
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The work itself: here, an echo.
orch::Value handle(const orch::Value& request) {
  return orch::Value::object({{"response", "echo: " + request["message"].get_string("")}});
}

void on_connect(struct mosquitto* mosq, void* data, int rc, int, const mosquitto_property*) {
  auto* w = static_cast<Worker*>(data);
  if (rc != 0) {
    std::fprintf(stderr, "connection refused: %s\n", mosquitto_reason_string(rc));
    return;
  }
  // Subscribe on every connect: a broker that lost the session lost the subscription.
  mosquitto_subscribe_v5(mosq, nullptr, w->topic.c_str(), 1, 0, nullptr);
  std::printf("serving %s\n", w->topic.c_str());
  std::fflush(stdout);
}

void on_message(struct mosquitto* mosq, void* data, const struct mosquitto_message* msg,
                const mosquitto_property* props) {
  auto* w = static_cast<Worker*>(data);
  std::string text(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen));
  auto parsed = orch::parse_json(text);
  if (!parsed.ok() || !parsed->is_object()) return;  // not a request
  const orch::Value& request = *parsed;

  // Where to answer and under which id: v5 properties first, then the payload.
  std::string correlation;
  std::string reply_to;
  void* cdata = nullptr;
  uint16_t clen = 0;
  if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &cdata, &clen, false) && cdata) {
    correlation.assign(static_cast<const char*>(cdata), clen);
    std::free(cdata);
  }
  char* topic = nullptr;
  if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &topic, false) && topic) {
    reply_to = topic;
    std::free(topic);
  }
  if (correlation.empty()) correlation = request["correlation_id"].get_string("");
  if (reply_to.empty()) reply_to = request["reply_to"].get_string("");
  if (correlation.empty() || reply_to.empty()) return;

  std::string reply;
  {
    std::lock_guard<std::mutex> lock(w->mu);
    if (const std::string* cached = w->cache.find(correlation)) {
      reply = *cached;  // a redelivery: answer the same again
    }
  }
  if (reply.empty()) {
    const int64_t deadline = request["deadline_ms"].get_int(0);
    if (deadline > 0 && deadline < now_ms()) return;  // nobody waits for it any more
    orch::Value body = handle(request);
    body.set("correlation_id", correlation);
    reply = body.to_json();
    std::lock_guard<std::mutex> lock(w->mu);
    w->cache.put(correlation, reply);
  }
  mosquitto_property* out = nullptr;
  mosquitto_property_add_binary(&out, MQTT_PROP_CORRELATION_DATA, correlation.data(),
                                static_cast<uint16_t>(correlation.size()));
  mosquitto_publish_v5(mosq, nullptr, reply_to.c_str(), static_cast<int>(reply.size()), reply.data(), 1, false, out);
  mosquitto_property_free_all(&out);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string host = argc > 1 ? argv[1] : "127.0.0.1";
  const int port = argc > 2 ? std::atoi(argv[2]) : 1883;
  Worker worker;
  worker.topic = argc > 3 ? argv[3] : "orch/work";

  signal(SIGINT, [](int) { g_stop = 1; });
  signal(SIGTERM, [](int) { g_stop = 1; });
  mosquitto_lib_init();
  const std::string client_id = "orch-example-worker-" + worker.topic;
  struct mosquitto* mosq = mosquitto_new(client_id.c_str(), /*clean_session=*/false, &worker);
  if (!mosq) {
    std::fprintf(stderr, "cannot create the MQTT client\n");
    return 1;
  }
  mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_reconnect_delay_set(mosq, 1, 30, true);
  mosquitto_connect_v5_callback_set(mosq, on_connect);
  mosquitto_message_v5_callback_set(mosq, on_message);
  mosquitto_property* props = nullptr;
  mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 24 * 3600);  // queue while down
  int rc = mosquitto_connect_bind_v5(mosq, host.c_str(), port, 30, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) std::fprintf(stderr, "connect: %s (retrying)\n", mosquitto_strerror(rc));
  mosquitto_loop_start(mosq);  // reconnects on its own
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  mosquitto_disconnect(mosq);
  mosquitto_loop_stop(mosq, false);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();
  return 0;
}
