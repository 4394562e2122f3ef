// SPDX-License-Identifier: MIT
#include "callbacks.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "callback_check.h"
#include "orch/event_kinds.h"
#include "orch/host_policy.h"
#include "orch/id.h"
#include "orch/thread_guard.h"
#include "orch/url.h"

namespace orch::server {
namespace {

constexpr int kMaxAttempts = 4;

bool wants(const Value& callback, const std::string& kind) {
  const Value& events = callback["events"];
  if (!events.is_array() || events.size() == 0) return true;
  for (const Value& e : events.as_array()) {
    if (e.is_string() && e.as_string() == kind) return true;
  }
  return false;
}

// task_result stands for the step.completed / step.failed of a node that
// has no such event of its own (route, transform, interrupt, send,
// subgraph), which NullBoiler calls back for too (api 3.8, 3.9).
bool is_callback_event(const std::string& kind) {
  return kind == event_kind::kStepCompleted || kind == event_kind::kStepFailed || kind == event_kind::kRunCompleted || kind == event_kind::kRunFailed ||
         kind == event_kind::kRunInterrupted || kind == event_kind::kRunCancelled || kind == event_kind::kTaskResult;
}

bool has_step_events(const std::string& step_type) { return step_type == "task" || step_type == "agent"; }

bool ends_run(const std::string& kind) {
  return kind == event_kind::kRunCompleted || kind == event_kind::kRunFailed || kind == event_kind::kRunCancelled;
}

// Runs whose callbacks are remembered at most; past it the cache starts over.
constexpr size_t kMaxCachedRuns = 100000;

}  // namespace

std::string sign_callback(const std::string& secret, const std::string& timestamp, const std::string& nonce,
                          const std::string& body) {
  std::string message = timestamp + "." + nonce + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out = "v1=";
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 0xf]);
  }
  return out;
}

CallbackSender::CallbackSender(App& app, size_t threads) : app_(app), thread_count_(threads) {}

CallbackSender::~CallbackSender() {
  if (subscription_) app_.engine->unsubscribe(subscription_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void CallbackSender::start() {
  for (size_t i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { worker(); });
  // Called under the run's lock: only queue the event here.
  subscription_ = app_.engine->subscribe("", [this](const EventRecord& e) {
    if (!is_callback_event(e.kind)) return;
    {
      // Most runs have no callbacks: once that is known, their events stop here.
      std::lock_guard<std::mutex> lock(cache_mu_);
      auto it = callbacks_of_.find(e.run_id);
      if (it != callbacks_of_.end() && !it->second.is_array()) {
        if (ends_run(e.kind)) callbacks_of_.erase(it);
        return;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
    cv_.notify_one();
  });
}

void CallbackSender::expect_run(const std::string& run_id, const Value& callbacks) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (callbacks_of_.size() >= kMaxCachedRuns) callbacks_of_.clear();
  callbacks_of_[run_id] = callbacks.is_array() ? callbacks : Value();
}

void CallbackSender::forget_run(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  callbacks_of_.erase(run_id);
}

Value CallbackSender::callbacks_of(const std::string& run_id) {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = callbacks_of_.find(run_id);
    if (it != callbacks_of_.end()) return it->second;
  }
  // A run's callbacks are fixed when it is created: read them once.
  auto run = app_.store->get_run(run_id);
  if (!run.ok()) return Value();
  const Value& host_data = run->host_data;  // const: reading must not make it an object
  const Value& stored = host_data["callbacks"];
  Value callbacks = stored.is_array() ? stored : Value();
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (callbacks_of_.size() >= kMaxCachedRuns) callbacks_of_.clear();
  callbacks_of_[run_id] = callbacks;
  return callbacks;
}

void CallbackSender::on_event(const EventRecord& e) {
  Value callbacks = callbacks_of(e.run_id);
  if (ends_run(e.kind)) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    callbacks_of_.erase(e.run_id);
  }
  if (!callbacks.is_array()) return;
  if (e.kind == event_kind::kTaskResult) {
    deliver_node_result(e, callbacks);
    return;
  }
  deliver(e.kind, e, e.data["step_id"], e.data, callbacks);
}

void CallbackSender::deliver(const std::string& kind, const EventRecord& e, const Value& step_id, const Value& data,
                             const Value& callbacks) {
  for (const Value& cb : callbacks.as_array()) {
    if (!cb.is_object() || !cb["url"].is_string() || !wants(cb, kind)) continue;
    Value body = Value::object({{"event", kind}, {"run_id", e.run_id}});
    if (step_id.is_string()) body.set("step_id", step_id);
    body.set("timestamp_ms", static_cast<long long>(e.created_at_ms));
    body.set("data", data);
    enqueue(Delivery{cb["url"].as_string(), cb["headers"], cb["hmac_secret"].get_string(""), body.to_json(), 1});
  }
}

void CallbackSender::deliver_node_result(const EventRecord& e, const Value& callbacks) {
  const std::string kind = e.data["ok"].get_bool(true) ? event_kind::kStepCompleted : event_kind::kStepFailed;
  bool wanted = false;
  for (const Value& cb : callbacks.as_array()) wanted = wanted || (cb.is_object() && wants(cb, kind));
  if (!wanted || !e.data["id"].is_string()) return;
  // The node's step record says what it was and what it wrote (its record is
  // written with this event). Task and agent nodes have events of their own;
  // a node without a record (a cache hit) is not called back for, as in
  // NullBoiler.
  auto step = app_.store->get_step(e.data["id"].as_string());
  if (!step.ok() || step->run_id != e.run_id || has_step_events(step->type)) return;
  Value data = kind == event_kind::kStepCompleted
                   ? (step->output.is_null() ? Value::object() : step->output)
                   : Value::object({{"node", step->node_name}, {"error", step->error}});
  deliver(kind, e, e.data["id"], data, callbacks);
}

void CallbackSender::enqueue(Delivery d) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(std::move(d));
  cv_.notify_one();
}

void CallbackSender::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto due = [this] { return !delayed_.empty() && delayed_.begin()->first <= std::chrono::steady_clock::now(); };
    auto ready = [&] { return stop_ || !queue_.empty() || !events_.empty() || due(); };
    if (delayed_.empty()) {
      cv_.wait(lock, ready);
    } else {
      // A copy: another sender thread may take (and free) that delivery
      // while this one waits, and wait_until reads the time again.
      const auto next_due = delayed_.begin()->first;
      cv_.wait_until(lock, next_due, ready);
    }
    if (stop_) return;
    if (!events_.empty()) {
      EventRecord e = std::move(events_.front());
      events_.pop_front();
      lock.unlock();
      run_guarded("callback sender", [&] { on_event(e); });
      lock.lock();
      continue;
    }
    if (queue_.empty() && due()) {
      queue_.push_back(std::move(delayed_.begin()->second));
      delayed_.erase(delayed_.begin());
    }
    if (queue_.empty()) continue;
    Delivery d = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    bool ok = false;
    run_guarded("callback sender", [&] { ok = send(d); });
    lock.lock();
    if (ok) {
      app_.metrics.callbacks_sent.fetch_add(1, std::memory_order_relaxed);
    } else if (d.attempt < kMaxAttempts) {
      // Back off 250 ms, 500 ms, 1 s, then try again.
      auto when = std::chrono::steady_clock::now() + std::chrono::milliseconds(250 << (d.attempt - 1));
      ++d.attempt;
      delayed_.emplace(when, std::move(d));
    } else {
      app_.metrics.callbacks_failed.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

bool CallbackSender::send(const Delivery& d) {
  // Checked when the run was created (callback_check.h); checked again for
  // runs stored before that check existed, and the host resolved now.
  Result<Url> url = parse_http_url(d.url);
  if (!url.ok() || !check_resolved_host(app_.config.network, url->host).ok()) return false;
  httplib::Client client(url->origin());
  client.set_tcp_nodelay(true);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(10, 0);
  httplib::Headers headers;
  if (d.headers.is_object()) {
    for (const auto& [k, v] : d.headers.as_object()) {
      if (v.is_string() && check_callback_header(k, v.as_string()).ok()) headers.emplace(k, v.as_string());
    }
  }
  if (!d.secret.empty()) {
    std::string ts = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count());
    std::string nonce = new_uuid();
    std::string sig = sign_callback(d.secret, ts, nonce, d.body);
    for (const char* prefix : {"X-Orch-", "X-NullBoiler-"}) {
      headers.emplace(std::string(prefix) + "Timestamp", ts);
      headers.emplace(std::string(prefix) + "Nonce", nonce);
      headers.emplace(std::string(prefix) + "Signature", sig);
    }
  }
  auto res = client.Post(url->target.c_str(), headers, d.body, "application/json");
  return res && res->status >= 200 && res->status < 300;
}

}  // namespace orch::server
