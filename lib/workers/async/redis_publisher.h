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
// Shared runs (Config::watches set; see redis_call_routes.h): each request
// also records its call route. A call whose route names another instance's
// request still within its deadline is adopted instead of published: the
// route names this instance as owner, the call goes into the pending set and
// the watches, and the reply reader looks for its reply on the origin's
// reply stream.
//
// Thread-safety: every method may be called from any thread, including the
// hooks. The destructor may run on the publisher's own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orch/clock.h"
#include "orch/status.h"
#include "workers/async/redis_call_routes.h"
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
    // Shared runs only (null otherwise): this instance's name, the calls it
    // adopted, and how long a route outlives its call's deadline.
    std::shared_ptr<CallWatches> watches;
    std::string instance;
    int64_t route_grace_ms = 600000;
  };
  struct Job {
    std::string call_id;
    std::string stream;
    std::string payload;
    int64_t deadline_ms = 0;  // wall clock
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
  struct Action {
    bool adopt = false;  // else publish
    std::string origin;
    int64_t origin_deadline_ms = 0;
  };
  // Decides per job: publish, adopt another instance's request, or nothing
  // (sent before a restart: dropped from `batch`). False when the connection failed.
  static bool plan(const State& s, RedisClient& client, int64_t now_ms, std::vector<Job>* batch,
                   std::vector<Action>* actions);
  // The thread: publish() passes, each guarded (see thread_guard.h).
  static void run(std::shared_ptr<State> state);
  // Publishes until stopped; `client` is the connection it (re)opens.
  static void publish(State& s, std::unique_ptr<RedisClient>& client);
  std::shared_ptr<State> state_;
};

}  // namespace orch::internal
