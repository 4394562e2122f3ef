// SPDX-License-Identifier: MIT
// RedisPublisher: pipelined XADD of requests on a thread of its own.
#include "workers/async/redis_publisher.h"
#include "orch/thread_guard.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "workers/async/redis_client.h"

namespace orch::internal {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kConnectTimeout{2000};
constexpr milliseconds kIoTimeout{5000};
constexpr milliseconds kMinBackoff{100};
constexpr milliseconds kMaxBackoff{2000};
constexpr size_t kBatch = 256;

}  // namespace

struct RedisPublisher::State {
  Config config;
  std::shared_ptr<RedisPendingSet> pending;
  Hooks hooks;
  std::shared_ptr<Clock> clock;
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  bool stopping = false;
  bool connected = false;
  std::string last_error = "not connected yet";
};

namespace {

// SET the route of `call_id` (one reply to read), to expire a while after its deadline.
void append_route(RedisClient& client, const std::string& call_id, const CallRoute& route, int64_t now_ms,
                  int64_t grace_ms) {
  const int64_t ttl = std::max<int64_t>(route.deadline_ms - now_ms, 0) + std::max<int64_t>(grace_ms, 1);
  client.append({"SET", call_route_key(call_id), format_call_route(route), "PX", std::to_string(ttl)});
}

}  // namespace

bool RedisPublisher::plan(const State& s, RedisClient& client, int64_t now_ms, std::vector<Job>* batch,
                          std::vector<Action>* actions) {
  actions->assign(batch->size(), Action{});
  if (s.config.watches) {
    // Shared runs: a request another instance published (the run was taken
    // over) is adopted while its deadline holds, not sent again.
    for (const Job& j : *batch) client.append({"GET", call_route_key(j.call_id)});
    for (size_t i = 0; i < batch->size(); ++i) {
      Result<RedisValue> got = client.read();
      if (!got.ok()) return false;
      if (got->type != RedisValue::Type::kString) continue;
      std::optional<CallRoute> route = parse_call_route(got->str);
      if (!route || route->origin == s.config.instance || route->deadline_ms <= now_ms) continue;
      (*actions)[i].adopt = true;
      (*actions)[i].origin = route->origin;
      (*actions)[i].origin_deadline_ms = route->deadline_ms;
    }
  }
  // Requests sent before a restart are not sent twice.
  size_t kept = 0;
  for (size_t i = 0; i < batch->size(); ++i) {
    if (!(*actions)[i].adopt && s.pending->contains((*batch)[i].call_id)) continue;
    if (kept != i) {  // (a self-move would empty the strings)
      (*batch)[kept] = std::move((*batch)[i]);
      (*actions)[kept] = std::move((*actions)[i]);
    }
    ++kept;
  }
  batch->resize(kept);
  actions->resize(kept);
  return true;
}

RedisPublisher::RedisPublisher(Config config, std::shared_ptr<RedisPendingSet> pending, Hooks hooks,
                               std::shared_ptr<Clock> clock)
    : state_(std::make_shared<State>()) {
  state_->config = std::move(config);
  state_->pending = std::move(pending);
  state_->hooks = std::move(hooks);
  state_->clock = std::move(clock);
  state_->thread = std::thread(&RedisPublisher::run, state_);
}

RedisPublisher::~RedisPublisher() { stop(); }

void RedisPublisher::stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_all();
  join_connection_thread(state_->thread);
}

void RedisPublisher::enqueue(Job job) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping) return;
    state_->jobs.push_back(std::move(job));
  }
  state_->cv.notify_one();
}

bool RedisPublisher::connected() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->connected;
}

std::string RedisPublisher::last_error() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->connected ? std::string() : state_->last_error;
}

void RedisPublisher::run(std::shared_ptr<State> state) {
  SigpipeGuard sigpipe;
  State& s = *state;
  std::unique_ptr<RedisClient> client;
  // An exception ends one pass, not the thread: drop the connection, pause,
  // and go on with the queue (calls of the lost batch end at their deadline).
  while (!run_guarded("redis publisher", [&] { publish(s, client); })) {
    client.reset();
    std::unique_lock<std::mutex> lock(s.mu);
    s.connected = false;
    s.last_error = "internal error; reconnecting";
    s.cv.wait_for(lock, kMaxBackoff, [&s] { return s.stopping; });
    if (s.stopping) return;
  }
}

void RedisPublisher::publish(State& s, std::unique_ptr<RedisClient>& client) {
  milliseconds backoff = kMinBackoff;
  auto set_error = [&s](std::string error) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.connected = false;
    s.last_error = std::move(error);
  };
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(s.mu);
      s.cv.wait(lock, [&s] { return s.stopping || !s.jobs.empty(); });
      if (s.stopping) return;
    }
    if (!client || client->broken()) {
      client.reset();
      auto connected = RedisClient::connect(s.config.host, s.config.port, kConnectTimeout, kIoTimeout);
      Status ready = connected.ok() ? Status() : connected.status();
      if (ready.ok()) {
        client = std::move(connected).value();
        ready = s.pending->ensure_loaded(*client, s.clock->now_ms());
      }
      if (!ready.ok()) {
        client.reset();
        set_error(ready.message());
        std::unique_lock<std::mutex> lock(s.mu);
        s.cv.wait_for(lock, backoff, [&s] { return s.stopping; });
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      backoff = kMinBackoff;
      std::lock_guard<std::mutex> lock(s.mu);
      s.connected = true;
      s.last_error.clear();
    }

    std::vector<Job> batch;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      while (!s.jobs.empty() && batch.size() < kBatch) {
        batch.push_back(std::move(s.jobs.front()));
        s.jobs.pop_front();
      }
    }
    // Calls that ended meanwhile need no request.
    batch.erase(std::remove_if(batch.begin(), batch.end(),
                               [&s](const Job& j) { return !s.hooks.still_waiting(j.call_id); }),
                batch.end());
    const int64_t now_ms = s.clock->now_ms();
    std::vector<Action> actions;
    if (!plan(s, *client, now_ms, &batch, &actions)) {
      set_error(client->broken() ? "connection lost" : "unexpected reply");
      client.reset();
      std::lock_guard<std::mutex> lock(s.mu);
      for (size_t i = batch.size(); i > 0; --i) s.jobs.push_front(std::move(batch[i - 1]));
      continue;
    }
    const std::string now = std::to_string(now_ms);
    const std::string max_len = std::to_string(s.config.max_len);
    std::vector<size_t> replies(batch.size(), 0);
    for (size_t i = 0; i < batch.size(); ++i) {
      const Job& j = batch[i];
      const Action& a = actions[i];
      s.pending->added(j.call_id);
      if (a.adopt) {
        // The request is with a worker already: wait for its reply on the origin's stream.
        s.config.watches->add(j.call_id, a.origin, std::max(j.deadline_ms, a.origin_deadline_ms));
        CallRoute route{s.config.instance, a.origin, a.origin_deadline_ms};
        append_route(*client, j.call_id, route, now_ms, s.config.route_grace_ms);
        client->append({"HSET", s.pending->key(), j.call_id, now});
        replies[i] = 2;
        continue;
      }
      client->append({"XADD", j.stream, "MAXLEN", "~", max_len, "*", "correlation_id", j.call_id, "reply_to",
                      s.config.reply_stream, "payload", j.payload});
      client->append({"HSET", s.pending->key(), j.call_id, now});
      replies[i] = 2;
      if (s.config.watches) {
        append_route(*client, j.call_id, CallRoute{s.config.instance, s.config.instance, j.deadline_ms}, now_ms,
                     s.config.route_grace_ms);
        ++replies[i];
      }
    }
    size_t done = 0;
    for (; done < batch.size(); ++done) {
      const Job& j = batch[done];
      Result<RedisValue> first = client->read();
      bool ok = first.ok();
      for (size_t k = 1; ok && k < replies[done]; ++k) ok = client->read().ok();
      if (!ok) break;
      if (!actions[done].adopt && first->is_error()) {
        s.pending->removed(j.call_id);
        s.hooks.on_failed(j.call_id,
                          Status::unavailable("redis: XADD to stream " + j.stream + " failed: " + first->str));
      }
    }
    if (done < batch.size()) {
      // The connection broke: send the rest again once reconnected (a worker
      // may then see a request twice; replies are matched by correlation id).
      set_error(client->broken() ? "connection lost" : "unexpected reply");
      client.reset();
      std::lock_guard<std::mutex> lock(s.mu);
      for (size_t i = batch.size(); i > done; --i) {
        s.pending->removed(batch[i - 1].call_id);
        if (s.config.watches) s.config.watches->remove(batch[i - 1].call_id);
        s.jobs.push_front(std::move(batch[i - 1]));
      }
      continue;
    }
    // Calls answered while we published: drop their pending entries again.
    std::vector<std::string> del = {"HDEL", s.pending->key()};
    for (const Job& j : batch) {
      if (!s.hooks.still_waiting(j.call_id)) del.push_back(j.call_id);
    }
    if (del.size() > 2) {
      for (size_t i = 2; i < del.size(); ++i) s.pending->removed(del[i]);
      if (s.config.watches) {
        std::vector<std::string> routes = {"DEL"};
        for (size_t i = 2; i < del.size(); ++i) routes.push_back(call_route_key(del[i]));
        (void)client->command(routes);
      }
      (void)client->command(del);
    }
  }
}

}  // namespace orch::internal
