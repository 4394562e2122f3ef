// SPDX-License-Identifier: MIT
//
// A Redis Streams worker for orch's `redis_stream` protocol
// (docs/async-workers.md). It reads a request stream through a consumer group
// and adds every answer to the reply stream the request names, with the
// request's correlation id:
//
//   redis_worker [host] [port] [stream] [consumer]
//       (defaults: 127.0.0.1 6379 orch:work worker-1)
//
// and in orch: a worker {"id": "echo", "protocol": "redis_stream",
// "url": "redis://127.0.0.1:6379/orch:work"}.
//
// What a real worker keeps from this one:
//   * consumer group "workers" (several worker processes share the stream,
//     each request goes to one of them); each process a consumer name of its
//     own that stays the same across its restarts;
//   * first the requests still pending for this consumer (a crash left them
//     unacknowledged), then new ones (`>`); XACK after the reply is added;
//   * now and then XAUTOCLAIM takes over requests a dead consumer left;
//   * a request can come twice (orch re-sends after a lost connection): answer
//     by correlation id; skip requests whose deadline_ms has passed.
//
// Stop it with Ctrl-C.
#include <hiredis/hiredis.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "orch/value.h"

namespace {

volatile sig_atomic_t g_stop = 0;
const char* kGroup = "workers";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One reply owned by a unique_ptr-like guard.
struct Reply {
  redisReply* r = nullptr;
  ~Reply() {
    if (r) freeReplyObject(r);
  }
  redisReply* operator->() const { return r; }
  explicit operator bool() const { return r != nullptr; }
};

Reply command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  Reply reply;
  reply.r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
  return reply;
}

// The work itself: here, an echo.
orch::Value handle(const orch::Value& request) {
  return orch::Value::object({{"response", "echo: " + request["message"].get_string("")}});
}

std::string field(const redisReply* fields, const std::string& name) {
  for (size_t i = 0; fields && i + 1 < fields->elements; i += 2) {
    if (std::string(fields->element[i]->str, fields->element[i]->len) == name) {
      return std::string(fields->element[i + 1]->str, fields->element[i + 1]->len);
    }
  }
  return "";
}

// Answers one stream entry [id, [field, value, ...]]; false on a connection error.
bool serve_entry(redisContext* c, const std::string& stream, const redisReply* entry) {
  const std::string id(entry->element[0]->str, entry->element[0]->len);
  const redisReply* fields = entry->elements > 1 && entry->element[1]->type == REDIS_REPLY_ARRAY ? entry->element[1]
                                                                                                  : nullptr;
  auto parsed = orch::parse_json(field(fields, "payload"));
  if (parsed.ok() && parsed->is_object()) {
    const orch::Value& request = *parsed;
    std::string correlation = field(fields, "correlation_id");
    std::string reply_to = field(fields, "reply_to");
    if (correlation.empty()) correlation = request["correlation_id"].get_string("");
    if (reply_to.empty()) reply_to = request["reply_to"].get_string("");
    const int64_t deadline = request["deadline_ms"].get_int(0);
    if (!correlation.empty() && !reply_to.empty() && (deadline == 0 || deadline >= now_ms())) {
      orch::Value body = handle(request);
      body.set("correlation_id", correlation);
      Reply added = command(c, {"XADD", reply_to, "MAXLEN", "~", "10000", "*", "correlation_id", correlation,
                                "payload", body.to_json()});
      if (!added) return false;  // not acknowledged: served again after the reconnect
    }
  }
  return bool(command(c, {"XACK", stream, kGroup, id}));
}

// Serves the entries of an XREADGROUP reply; returns how many, or -1 on a connection error.
int serve(redisContext* c, const std::string& stream, const redisReply* reply) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY) return 0;
  int served = 0;
  for (size_t s = 0; s < reply->elements; ++s) {
    const redisReply* entries = reply->element[s]->element[1];
    for (size_t e = 0; e < entries->elements; ++e) {
      if (!serve_entry(c, stream, entries->element[e])) return -1;
      ++served;
    }
  }
  return served;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string host = argc > 1 ? argv[1] : "127.0.0.1";
  const int port = argc > 2 ? std::atoi(argv[2]) : 6379;
  const std::string stream = argc > 3 ? argv[3] : "orch:work";
  const std::string consumer = argc > 4 ? argv[4] : "worker-1";

  signal(SIGINT, [](int) { g_stop = 1; });
  signal(SIGTERM, [](int) { g_stop = 1; });
  signal(SIGPIPE, SIG_IGN);
  redisContext* c = nullptr;
  auto last_claim = std::chrono::steady_clock::time_point();
  while (!g_stop) {
    if (!c) {
      c = redisConnectWithTimeout(host.c_str(), port, {2, 0});
      if (!c || c->err) {
        std::fprintf(stderr, "connect: %s (retrying)\n", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        c = nullptr;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      redisSetTimeout(c, {10, 0});  // longer than the BLOCK below
      // "0": requests added before the group existed are served too.
      Reply created = command(c, {"XGROUP", "CREATE", stream, kGroup, "0", "MKSTREAM"});  // BUSYGROUP: fine
      // Requests this consumer took before a crash and never acknowledged.
      for (;;) {
        Reply own = command(c, {"XREADGROUP", "GROUP", kGroup, consumer, "COUNT", "50", "STREAMS", stream, "0"});
        if (serve(c, stream, own.r) <= 0) break;
      }
      std::printf("serving %s as %s\n", stream.c_str(), consumer.c_str());
      std::fflush(stdout);
    }
    if (std::chrono::steady_clock::now() - last_claim > std::chrono::seconds(30)) {
      // Take over requests that another (dead) consumer left for a minute.
      Reply claimed = command(c, {"XAUTOCLAIM", stream, kGroup, consumer, "60000", "0-0", "COUNT", "50"});
      if (claimed && claimed->type == REDIS_REPLY_ARRAY && claimed->elements >= 2) {
        for (size_t e = 0; e < claimed->element[1]->elements; ++e) {
          const redisReply* entry = claimed->element[1]->element[e];
          if (entry->type == REDIS_REPLY_ARRAY && entry->elements >= 2) (void)serve_entry(c, stream, entry);
        }
      }
      last_claim = std::chrono::steady_clock::now();
    }
    Reply fresh = command(c, {"XREADGROUP", "GROUP", kGroup, consumer, "COUNT", "50", "BLOCK", "5000", "STREAMS",
                              stream, ">"});
    if (fresh && fresh->type == REDIS_REPLY_ERROR) {
      // NOGROUP: Redis lost the stream (restarted without persistence).
      Reply created = command(c, {"XGROUP", "CREATE", stream, kGroup, "0", "MKSTREAM"});
      continue;
    }
    if (!fresh || serve(c, stream, fresh.r) < 0) {
      redisFree(c);  // reconnect
      c = nullptr;
    }
  }
  if (c) redisFree(c);
  return 0;
}
