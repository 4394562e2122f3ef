// SPDX-License-Identifier: MIT
//
// RedisPublisher: sends the requests of one Redis broker from its own thread
// and connection, pipelined: for each call `XADD <stream> MAXLEN ~ N *
// correlation_id <id> reply_to <reply stream> payload <json>` and an HSET in
// the pending set. A call whose request is already in the pending set (sent
// before a restart) is not sent again. While the broker is unreachable the
// requests wait (reconnecting with back-off); calls that ended meanwhile are
// skipped.
//
// Thread-safety: every method may be called from any thread, including the
// hooks. The destructor may run on the publisher's own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "orch/clock.h"
#include "orch/status.h"
#include "workers/async/redis_pending.h"

namespace orch::internal {

class RedisClient;

class RedisPublisher {
 public:
  struct Config {
    std::string host;
    int port = 6379;
    std::string reply_stream;
    int64_t max_len = 10000;
  };
  struct Job {
    std::string call_id;
    std::string stream;
    std::string payload;
  };
  struct Hooks {
    std::function<bool(const std::string& call_id)> still_waiting;
    std::function<void(const std::string& call_id, Status error)> on_failed;
  };

  RedisPublisher(Config config, std::shared_ptr<RedisPendingSet> pending, Hooks hooks,
                 std::shared_ptr<Clock> clock);
  ~RedisPublisher();
  RedisPublisher(const RedisPublisher&) = delete;
  RedisPublisher& operator=(const RedisPublisher&) = delete;

  void enqueue(Job job);
  bool connected() const;
  // Why the publisher is not connected (empty while it is).
  std::string last_error() const;
  // Ends the thread (joins it, unless called on it). Idempotent.
  void stop();

 private:
  struct State;
  // The thread: publish() passes, each guarded (see thread_guard.h).
  static void run(std::shared_ptr<State> state);
  // Publishes until stopped; `client` is the connection it (re)opens.
  static void publish(State& s, std::unique_ptr<RedisClient>& client);
  std::shared_ptr<State> state_;
};

}  // namespace orch::internal
