// SPDX-License-Identifier: MIT
//
// RedisReplyReader: the listener of one Redis broker. On a thread and
// connection of its own it reads the reply stream through a consumer group
// (`XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS replies >`), first the
// entries still pending for this consumer (a crash left them unacknowledged),
// and now and then reclaims entries left pending by other consumers
// (`XAUTOCLAIM`). Each entry goes to a hook that decides: acknowledge it now
// (XACK, and HDEL of its call in the pending set) or hold it unacknowledged
// (a reply whose call will be dispatched again after a restart); held entries
// are acknowledged later through ack_later(). Acknowledged entries are
// deleted (XDEL): the reply stream belongs to this orch alone. Reconnects with
// back-off and recreates the group when the broker lost it.
//
// Shared runs (Config::watches set; see redis_call_routes.h): before an entry
// of its own stream goes to on_entry, the reader looks up its call's route;
// an entry whose route names another owner is passed on to that owner's
// reply stream (XADD with the same fields) and acknowledged here. While
// calls adopted from other instances wait, the reader also looks through
// their origins' reply streams (XRANGE, a bounded page per turn) for those
// calls' replies, hands each to on_foreign_entry and, when taken,
// acknowledges and deletes it there (and HDELs it from the origin's pending set).
//
// Thread-safety: every method may be called from any thread, including the
// hooks. stop() (and the destructor) may run on the reader's own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "orch/clock.h"
#include "workers/async/redis_call_routes.h"
#include "workers/async/redis_pending.h"

namespace orch::internal {

class RedisClient;

class RedisReplyReader {
 public:
  struct Config {
    std::string host;
    int port = 6379;
    std::string stream;
    std::string group;
    std::string consumer;
    int64_t block_ms = 1000;
    int64_t claim_min_idle_ms = 60000;
    int64_t claim_interval_ms = 30000;
    // > 0: EXPIRE the reply stream and the pending set after this many
    // seconds without a reader (refreshed every claim interval).
    int64_t expire_s = 0;
    // Shared runs only (null otherwise): the calls adopted from other
    // instances, this instance's name, MAXLEN ~ of passed-on replies.
    std::shared_ptr<CallWatches> watches;
    std::string instance;
    int64_t forward_max_len = 10000;
  };
  struct Entry {
    std::string id;
    std::vector<std::pair<std::string, std::string>> fields;  // empty when the entry was trimmed away
    const std::string* field(const std::string& name) const;
  };
  enum class Verdict { kAck, kHold };
  struct Hooks {
    // `call_id`: set to the call the entry answers, so acking forgets it in
    // the pending set.
    std::function<Verdict(const Entry& entry, std::string* call_id)> on_entry;
    // After every read (housekeeping).
    std::function<void()> on_tick;
    // Shared runs: the correlation id an entry answers ("" when it is not a reply).
    std::function<std::string(const Entry& entry)> route_of;
    // Shared runs: the reply to an adopted call, read on another instance's
    // stream. True when it was taken (then acknowledged there).
    std::function<bool(const Entry& entry)> on_foreign_entry;
  };

  RedisReplyReader(Config config, std::shared_ptr<RedisPendingSet> pending, Hooks hooks,
                   std::shared_ptr<Clock> clock);
  ~RedisReplyReader();
  RedisReplyReader(const RedisReplyReader&) = delete;
  RedisReplyReader& operator=(const RedisReplyReader&) = delete;

  // XACK `entry_id` (when not empty) and HDEL `call_id` (when not empty) on the next turn.
  void ack_later(std::string entry_id, std::string call_id);
  bool connected() const;
  std::string last_error() const;
  void stop();

 private:
  struct State;
  struct Ack;
  // Shared runs: passes on the entries of `entries` whose route names another
  // owner (acknowledging them) and removes them. False when the connection failed.
  static bool route_entries(State& s, RedisClient& client, std::vector<Entry>* entries);
  // Shared runs: reads the adopted calls' replies on their origins' streams.
  static bool read_foreign(State& s, RedisClient& client);
  // The thread: read_replies() passes, each guarded (see thread_guard.h).
  static void run(std::shared_ptr<State> state);
  // Reads until stopped; `client` is the connection it (re)opens.
  static void read_replies(State& s, std::unique_ptr<RedisClient>& client);
  std::shared_ptr<State> state_;
};

}  // namespace orch::internal
