// SPDX-License-Identifier: MIT
// RedisPublisher: pipelined XADD of requests on a thread of its own.
#include "workers/async/redis_publisher.h"
#include "orch/thread_guard.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
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
    // Calls that ended meanwhile need no request; requests sent before a
    // restart are not sent twice.
    batch.erase(std::remove_if(batch.begin(), batch.end(),
                               [&s](const Job& j) {
                                 return !s.hooks.still_waiting(j.call_id) || s.pending->contains(j.call_id);
                               }),
                batch.end());
    const std::string now = std::to_string(s.clock->now_ms());
    const std::string max_len = std::to_string(s.config.max_len);
    for (const Job& j : batch) {
      s.pending->added(j.call_id);
      client->append({"XADD", j.stream, "MAXLEN", "~", max_len, "*", "correlation_id", j.call_id, "reply_to",
                      s.config.reply_stream, "payload", j.payload});
      client->append({"HSET", s.pending->key(), j.call_id, now});
    }
    size_t done = 0;
    for (; done < batch.size(); ++done) {
      Result<RedisValue> added = client->read();
      Result<RedisValue> recorded = added.ok() ? client->read() : added;
      if (!added.ok() || !recorded.ok()) break;
      const Job& j = batch[done];
      if (added->is_error()) {
        s.pending->removed(j.call_id);
        s.hooks.on_failed(j.call_id, Status::unavailable("redis: XADD to stream " + j.stream + " failed: " + added->str));
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
      (void)client->command(del);
    }
  }
}

}  // namespace orch::internal
