// SPDX-License-Identifier: MIT
//
// CallbackSender: delivers a run's `callbacks` (webhooks) for its events:
// POST {"event","run_id","step_id"?,"timestamp_ms","data"} to each callback
// whose `events` list matches (empty or absent: all), with its `headers`, and,
// when it has an `hmac_secret`, signed: X-Orch-Timestamp, X-Orch-Nonce and
// X-Orch-Signature: v1=<hex HMAC-SHA256(secret, ts + "." + nonce + "." + body)>
// (also sent under NullBoiler's X-NullBoiler-* names). Route, transform,
// interrupt, send and subgraph nodes are called back for as step.completed
// (data: their step record's output) or step.failed, as task and agent nodes
// are. A delivery that fails
// (transport error or non-2xx) is retried 3 more times with back-off.
//
// Deliveries run on the sender's own threads, never on the engine's.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "app.h"

namespace orch::server {

// The signature value ("v1=<hex>") for `body`.
std::string sign_callback(const std::string& secret, const std::string& timestamp, const std::string& nonce,
                          const std::string& body);

class CallbackSender {
 public:
  explicit CallbackSender(App& app, size_t threads = 2);
  ~CallbackSender();

  // Subscribes to the engine; call once.
  void start();
  // The callbacks of a run about to start (null: none), so its events need
  // no read of the run from the store; forget_run() if it does not start.
  void expect_run(const std::string& run_id, const Value& callbacks);
  void forget_run(const std::string& run_id);

 private:
  struct Delivery {
    std::string url;
    Value headers;
    std::string secret;
    std::string body;
    int attempt = 1;
  };
  void on_event(const EventRecord& e);
  // Queues `kind`'s deliveries to the callbacks that want it.
  void deliver(const std::string& kind, const EventRecord& e, const Value& step_id, const Value& data,
               const Value& callbacks);
  // A node's task_result, as the step.completed / step.failed callback of a
  // node that has none of its own.
  void deliver_node_result(const EventRecord& e, const Value& callbacks);
  // The run's callbacks array, or null when it has none (or is gone).
  Value callbacks_of(const std::string& run_id);
  void enqueue(Delivery d);
  void worker();
  bool send(const Delivery& d);

  App& app_;
  size_t thread_count_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Delivery> queue_;
  std::deque<EventRecord> events_;  // resolved to deliveries off the engine's threads
  std::multimap<std::chrono::steady_clock::time_point, Delivery> delayed_;  // retries waiting out back-off
  bool stop_ = false;
  std::vector<std::thread> threads_;
  uint64_t subscription_ = 0;
  std::mutex cache_mu_;
  std::unordered_map<std::string, Value> callbacks_of_;  // run id -> callbacks (null: none)
};

}  // namespace orch::server
