// SPDX-License-Identifier: MIT
// RedisReplyReader: the consumer-group reader of a reply stream.
#include "workers/async/redis_reply_reader.h"
#include "orch/thread_guard.h"

#include <algorithm>
#include <condition_variable>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "workers/async/async_settings.h"
#include "workers/async/redis_client.h"

namespace orch::internal {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kConnectTimeout{2000};
constexpr milliseconds kMinBackoff{100};
constexpr milliseconds kMaxBackoff{2000};
constexpr const char* kCount = "100";
// Shared runs: how often the origins' streams are looked through while
// adopted calls wait, and how many of their entries at most per turn.
constexpr int64_t kForeignPollMs = 200;
constexpr const char* kForeignCount = "1000";
constexpr size_t kForeignCountN = 1000;
// A passed-on entry keeps at most this many fields (a reply has three).
constexpr size_t kMaxForwardedFields = 16;

using Entry = RedisReplyReader::Entry;

// One stream entry: [id, [field, value, ...]] (fields nil when trimmed away).
bool parse_entry(const RedisValue& v, Entry* out) {
  if (!v.is_array() || v.elements.empty()) return false;
  out->id = v.elements[0].str;
  out->fields.clear();
  if (v.elements.size() > 1 && v.elements[1].is_array()) {
    const auto& kv = v.elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) out->fields.emplace_back(kv[i].str, kv[i + 1].str);
  }
  return true;
}

void parse_entries(const RedisValue& list, std::vector<Entry>* out) {
  if (!list.is_array()) return;
  for (const RedisValue& v : list.elements) {
    Entry e;
    if (parse_entry(v, &e)) out->push_back(std::move(e));
  }
}

// XREADGROUP: nil, or [[stream, [entry, ...]], ...].
std::vector<Entry> read_group_entries(const RedisValue& reply) {
  std::vector<Entry> entries;
  if (!reply.is_array()) return entries;
  for (const RedisValue& stream : reply.elements) {
    if (stream.is_array() && stream.elements.size() >= 2) parse_entries(stream.elements[1], &entries);
  }
  return entries;
}

}  // namespace

const std::string* RedisReplyReader::Entry::field(const std::string& name) const {
  for (const auto& [key, value] : fields) {
    if (key == name) return &value;
  }
  return nullptr;
}

// An acknowledgement for the next turn: XACK + XDEL of a stream entry (of our
// stream, or of an origin's), HDEL of the call in the pending set (ours, and
// the origin's), DEL of its route.
struct RedisReplyReader::Ack {
  std::string stream;  // empty: ours
  std::string entry_id;
  std::string call_id;
  std::string origin_pending;  // the origin's pending set, for an adopted call
  bool keep_route = false;     // passed on: the route still names the owner
};

struct RedisReplyReader::State {
  Config config;
  std::shared_ptr<RedisPendingSet> pending;
  Hooks hooks;
  std::shared_ptr<Clock> clock;
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool connected = false;
  std::string last_error = "not connected yet";
  std::vector<Ack> acks;
  // Shared runs, reader thread only: where the next look at each origin's stream starts.
  std::map<std::string, std::string> foreign_cursors;

  // The live client, so stop() can interrupt a blocking read.
  std::mutex client_mu;
  RedisClient* client = nullptr;

  bool stopped() {
    std::lock_guard<std::mutex> lock(mu);
    return stopping;
  }
  void set_error(std::string error) {
    std::lock_guard<std::mutex> lock(mu);
    connected = false;
    last_error = std::move(error);
  }
  // Waits `d` unless stopped first.
  void pause(milliseconds d) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, d, [this] { return stopping; });
  }
};

RedisReplyReader::RedisReplyReader(Config config, std::shared_ptr<RedisPendingSet> pending, Hooks hooks,
                                   std::shared_ptr<Clock> clock)
    : state_(std::make_shared<State>()) {
  state_->config = std::move(config);
  state_->pending = std::move(pending);
  state_->hooks = std::move(hooks);
  state_->clock = std::move(clock);
  state_->thread = std::thread(&RedisReplyReader::run, state_);
}

RedisReplyReader::~RedisReplyReader() { stop(); }

void RedisReplyReader::stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_all();
  {
    std::lock_guard<std::mutex> lock(state_->client_mu);
    if (state_->client) state_->client->interrupt();
  }
  join_connection_thread(state_->thread);
}

void RedisReplyReader::ack_later(std::string entry_id, std::string call_id) {
  std::lock_guard<std::mutex> lock(state_->mu);
  Ack ack;
  ack.entry_id = std::move(entry_id);
  ack.call_id = std::move(call_id);
  state_->acks.push_back(std::move(ack));
}

bool RedisReplyReader::connected() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->connected;
}

std::string RedisReplyReader::last_error() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->connected ? std::string() : state_->last_error;
}

void RedisReplyReader::run(std::shared_ptr<State> state) {
  SigpipeGuard sigpipe;
  State& s = *state;
  std::unique_ptr<RedisClient> client;
  // An exception ends one pass, not the thread: drop the connection (stop()
  // must not see it any more), pause, and read again.
  while (!run_guarded("redis reply reader", [&] { read_replies(s, client); })) {
    {
      std::lock_guard<std::mutex> lock(s.client_mu);
      s.client = nullptr;
    }
    client.reset();
    s.set_error("internal error; reconnecting");
    s.pause(kMaxBackoff);
    if (s.stopped()) return;
  }
}

void RedisReplyReader::read_replies(State& s, std::unique_ptr<RedisClient>& client) {
  const Config& c = s.config;
  milliseconds backoff = kMinBackoff;
  bool read_own_pending = true;
  std::string pending_cursor = "0";
  std::string claim_cursor = "0-0";
  SteadyTime next_claim;

  auto create_group = [&]() -> Status {
    ORCH_ASSIGN_OR_RETURN(RedisValue r, client->command({"XGROUP", "CREATE", c.stream, c.group, "0", "MKSTREAM"}));
    if (r.is_error() && r.str.rfind("BUSYGROUP", 0) != 0) {
      return Status::unavailable("redis: XGROUP CREATE " + c.stream + " failed: " + r.str);
    }
    return Status();
  };
  auto drop_client = [&] {
    std::lock_guard<std::mutex> lock(s.client_mu);
    s.client = nullptr;
    client.reset();
  };

  while (!s.stopped()) {
    if (!client) {
      auto connected = RedisClient::connect(c.host, c.port, kConnectTimeout, milliseconds(c.block_ms + 3000));
      Status ready = connected.ok() ? Status() : connected.status();
      if (ready.ok()) {
        client = std::move(connected).value();
        ready = create_group();
        if (ready.ok()) ready = s.pending->ensure_loaded(*client, s.clock->now_ms());
      }
      if (!ready.ok()) {
        client.reset();
        s.set_error(ready.message());
        s.pause(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(s.client_mu);
        if (s.stopped()) break;
        s.client = client.get();
      }
      backoff = kMinBackoff;
      read_own_pending = true;
      pending_cursor = "0";
      claim_cursor = "0-0";
      next_claim = s.clock->steady_now();
      std::lock_guard<std::mutex> lock(s.mu);
      s.connected = true;
      s.last_error.clear();
    }

    // Acknowledge what the hooks let go since the last turn.
    std::vector<Ack> acks;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      acks.swap(s.acks);
    }
    size_t sent = 0;
    for (const Ack& ack : acks) {
      if (!ack.entry_id.empty()) {
        // Only this orch reads its reply stream (and an origin's, only for
        // the calls it adopted): a handled entry can go.
        const std::string& stream = ack.stream.empty() ? c.stream : ack.stream;
        client->append({"XACK", stream, c.group, ack.entry_id});
        client->append({"XDEL", stream, ack.entry_id});
        sent += 2;
      }
      if (!ack.call_id.empty()) {
        s.pending->removed(ack.call_id);
        client->append({"HDEL", s.pending->key(), ack.call_id});
        ++sent;
        if (!ack.origin_pending.empty()) {
          client->append({"HDEL", ack.origin_pending, ack.call_id});
          ++sent;
        }
        if (c.watches && !ack.keep_route) {
          client->append({"DEL", call_route_key(ack.call_id)});
          ++sent;
        }
      }
    }
    bool io_failed = false;
    for (size_t i = 0; i < sent && !io_failed; ++i) io_failed = !client->read().ok();
    if (io_failed) {
      // Unacknowledged entries come back from the pending list after the reconnect.
      s.set_error("connection lost");
      drop_client();
      continue;
    }

    const bool watching = c.watches && !c.watches->empty();
    if (watching && !read_foreign(s, *client)) {
      if (s.stopped()) break;
      s.set_error("connection lost");
      drop_client();
      s.pause(backoff);
      continue;
    }

    Result<RedisValue> reply = Status::unavailable("no read");
    std::vector<Entry> entries;
    bool claiming = false;
    if (read_own_pending) {
      reply = client->command({"XREADGROUP", "GROUP", c.group, c.consumer, "COUNT", kCount, "STREAMS", c.stream,
                               pending_cursor});
      if (reply.ok() && !reply->is_error()) {
        entries = read_group_entries(*reply);
        if (entries.empty()) {
          read_own_pending = false;
        } else {
          pending_cursor = entries.back().id;
        }
      }
    } else if (s.clock->steady_now() >= next_claim) {
      claiming = true;
      reply = client->command({"XAUTOCLAIM", c.stream, c.group, c.consumer, std::to_string(c.claim_min_idle_ms),
                               claim_cursor, "COUNT", kCount});
      if (reply.ok() && !reply->is_error() && reply->is_array() && reply->elements.size() >= 2) {
        claim_cursor = reply->elements[0].str;
        parse_entries(reply->elements[1], &entries);
        if (claim_cursor == "0-0" || claim_cursor.empty()) {
          claim_cursor = "0-0";
          next_claim = s.clock->steady_now() + milliseconds(c.claim_interval_ms);
          if (c.expire_s > 0) {
            const std::string ttl = std::to_string(c.expire_s);
            client->append({"EXPIRE", c.stream, ttl});
            client->append({"EXPIRE", s.pending->key(), ttl});
            (void)client->read();
            (void)client->read();
          }
        }
      }
    } else {
      // While adopted calls wait, come back soon to look at their origins' streams.
      const int64_t block_ms = watching ? std::min<int64_t>(c.block_ms, kForeignPollMs) : c.block_ms;
      reply = client->command({"XREADGROUP", "GROUP", c.group, c.consumer, "COUNT", kCount, "BLOCK",
                               std::to_string(block_ms), "STREAMS", c.stream, ">"});
      if (reply.ok() && !reply->is_error()) entries = read_group_entries(*reply);
    }
    if (!reply.ok() || client->broken()) {
      if (s.stopped()) break;
      s.set_error(reply.ok() ? "connection lost" : reply.status().message());
      drop_client();
      s.pause(backoff);
      continue;
    }
    if (reply->is_error()) {
      if (reply->str.rfind("NOGROUP", 0) == 0) {
        // The broker lost the stream (e.g. restarted without persistence).
        Status created = create_group();
        if (!created.ok()) s.set_error(created.message());
      } else {
        s.set_error("redis: " + std::string(claiming ? "XAUTOCLAIM" : "XREADGROUP") + " failed: " + reply->str);
        if (claiming) next_claim = s.clock->steady_now() + milliseconds(c.claim_interval_ms);
        s.pause(backoff);
      }
      continue;
    }

    if (c.watches && !entries.empty() && !route_entries(s, *client, &entries)) {
      // Unacknowledged entries come back from the pending list after the reconnect.
      if (s.stopped()) break;
      s.set_error("connection lost");
      drop_client();
      continue;
    }
    for (const Entry& e : entries) {
      std::string call_id;
      Verdict verdict = e.fields.empty() ? Verdict::kAck : s.hooks.on_entry(e, &call_id);
      if (verdict == Verdict::kAck) {
        Ack ack;
        ack.entry_id = e.id;
        ack.call_id = std::move(call_id);
        std::lock_guard<std::mutex> lock(s.mu);
        s.acks.push_back(std::move(ack));
      }
    }
    if (s.hooks.on_tick) s.hooks.on_tick();
  }
  drop_client();
}

bool RedisReplyReader::route_entries(State& s, RedisClient& client, std::vector<Entry>* entries) {
  const Config& c = s.config;
  std::vector<std::string> ids(entries->size());
  size_t asked = 0;
  for (size_t i = 0; i < entries->size(); ++i) {
    const Entry& e = (*entries)[i];
    if (e.fields.empty() || e.fields.size() > kMaxForwardedFields || !s.hooks.route_of) continue;
    ids[i] = s.hooks.route_of(e);
    if (ids[i].empty()) continue;
    client.append({"GET", call_route_key(ids[i])});
    ++asked;
  }
  if (asked == 0) return true;
  std::vector<std::optional<CallRoute>> routes(entries->size());
  for (size_t i = 0; i < entries->size(); ++i) {
    if (ids[i].empty()) continue;
    Result<RedisValue> got = client.read();
    if (!got.ok()) return false;
    if (got->type == RedisValue::Type::kString) routes[i] = parse_call_route(got->str);
  }
  std::vector<size_t> forwarded;  // indexes into `entries`
  for (size_t i = 0; i < entries->size(); ++i) {
    const Entry& e = (*entries)[i];
    if (!routes[i] || routes[i]->owner == c.instance) continue;
    // Another instance waits for this reply now (it took the run over).
    std::vector<std::string> add = {"XADD", AsyncSettings::redis_reply_stream_of(routes[i]->owner), "MAXLEN", "~",
                                    std::to_string(c.forward_max_len), "*"};
    for (const auto& [key, value] : e.fields) {
      add.push_back(key);
      add.push_back(value);
    }
    client.append(add);
    forwarded.push_back(i);
  }
  // Acknowledged here only once the owner's stream has it; an XADD the broker
  // refused leaves the entry to this instance.
  std::vector<bool> gone(entries->size(), false);
  for (size_t i : forwarded) {
    Result<RedisValue> added = client.read();
    if (!added.ok()) return false;
    if (added->is_error()) continue;
    gone[i] = true;
    Ack ack;
    ack.entry_id = (*entries)[i].id;
    ack.call_id = ids[i];
    ack.keep_route = true;
    std::lock_guard<std::mutex> lock(s.mu);
    s.acks.push_back(std::move(ack));
  }
  std::vector<Entry> local;
  for (size_t i = 0; i < entries->size(); ++i) {
    if (!gone[i]) local.push_back(std::move((*entries)[i]));
  }
  entries->swap(local);
  return true;
}

bool RedisReplyReader::read_foreign(State& s, RedisClient& client) {
  const Config& c = s.config;
  const std::vector<std::string> origins = c.watches->origins(s.clock->now_ms());
  // Cursors of origins no longer watched go.
  for (auto it = s.foreign_cursors.begin(); it != s.foreign_cursors.end();) {
    it = std::find(origins.begin(), origins.end(), it->first) == origins.end() ? s.foreign_cursors.erase(it)
                                                                                : std::next(it);
  }
  for (const std::string& origin : origins) {
    const std::string stream = AsyncSettings::redis_reply_stream_of(origin);
    // One page per turn, from where the last one ended (a long stream is read
    // over several turns), then from the start again.
    std::string& cursor = s.foreign_cursors[origin];
    if (cursor.empty()) cursor = "-";
    Result<RedisValue> range = client.command({"XRANGE", stream, cursor, "+", "COUNT", kForeignCount});
    if (!range.ok()) return false;
    if (range->is_error()) {  // e.g. not a stream: nothing for us there
      cursor = "-";
      continue;
    }
    std::vector<Entry> entries;
    parse_entries(*range, &entries);
    // (inclusive: the last entry is read again, harmlessly)
    cursor = entries.size() < kForeignCountN ? "-" : entries.back().id;
    for (const Entry& e : entries) {
      if (e.fields.empty()) continue;
      std::string call_id = s.hooks.route_of ? s.hooks.route_of(e) : std::string();
      if (call_id.empty() || !c.watches->contains(origin, call_id)) continue;
      if (!s.hooks.on_foreign_entry || !s.hooks.on_foreign_entry(e)) continue;
      c.watches->remove(call_id);
      Ack ack;
      ack.stream = stream;
      ack.entry_id = e.id;
      ack.call_id = call_id;
      ack.origin_pending = AsyncSettings::redis_pending_key_of(origin);
      std::lock_guard<std::mutex> lock(s.mu);
      s.acks.push_back(std::move(ack));
    }
  }
  return true;
}

}  // namespace orch::internal
