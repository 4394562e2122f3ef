// SPDX-License-Identifier: MIT
// SSE across a kill (issue #21): two `orch serve` processes on one
// PostgreSQL database; a run executes on A while a client streams it through
// B, disconnects, and A is SIGKILLed. The client reconnects to B with
// Last-Event-ID; B's lease keeper takes the run over and completes it. The
// events of both connections together are every event of the run, once, in
// order: no gap, no duplicate.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "catch.h"
#include "orch/id.h"
#include "orch/value.h"
#include "support/fake_workers.h"
#include "support/postgres_cluster.h"
#include "support/serve_pair.h"
#include "support/serve_process.h"
#include "support/test_helpers.h"

#ifndef ORCH_CLI
#error "ORCH_CLI must name the orch program"
#endif

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::ServeProcess;
using orch::testing::get_json;

namespace {

struct StreamedEvent {
  long long id = 0;
  std::string kind;  // from the data's "kind"
};

// Reads GET /runs/{id}/stream through `port` (after `last_event_id` when > 0)
// until the server ends the stream, or until `stop_after` complete events
// have arrived (then it disconnects; 0: never). Only complete frames count:
// one cut off by the disconnect comes again on the next connection.
std::vector<StreamedEvent> stream_events(int port, const std::string& run_id, long long last_event_id,
                                         size_t stop_after, bool* ended) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  httplib::Headers headers = {{"Accept", "text/event-stream"}};
  if (last_event_id > 0) headers.emplace("Last-Event-ID", std::to_string(last_event_id));
  std::vector<StreamedEvent> events;
  std::string buffer;
  auto result = client.Get(("/runs/" + run_id + "/stream").c_str(), headers, [&](const char* data, size_t len) {
    buffer.append(data, len);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
      const std::string frame = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      StreamedEvent e;
      size_t at = 0;
      while (at < frame.size()) {
        size_t eol = frame.find('\n', at);
        if (eol == std::string::npos) eol = frame.size();
        const std::string line = frame.substr(at, eol - at);
        if (line.rfind("id: ", 0) == 0) e.id = std::stoll(line.substr(4));
        if (line.rfind("data: ", 0) == 0) {
          auto parsed = orch::parse_json(line.substr(6));
          if (parsed.ok()) e.kind = (*parsed)["kind"].get_string("");
        }
        at = eol + 1;
      }
      if (e.id > 0) events.push_back(e);  // keep-alive comments carry no id
    }
    return stop_after == 0 || events.size() < stop_after;
  });
  *ended = static_cast<bool>(result) && result->status == 200;
  return events;
}

}  // namespace

TEST_CASE("SSE through B of a run executing on A resumes with Last-Event-ID across a kill of A, no gap, no duplicate", "[server][postgres][sse][lease]") {
  auto shared = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  orch::testing::PostgresCluster& pg = **shared;

  orch::testing::FakeWorker worker;
  orch::testing::FakeReply slow;
  slow.delay_ms = 800;  // six steps: the run lasts about five seconds
  worker.set_default(slow);
  const std::string config = std::string(R"({"workers": [{"id": "w", "url": ")") + worker.url() +
                             R"(", "token": "", "max_concurrent": 10}],
    "postgres": {"schema": "serve_sse_failover"}, "engine": {"lease_ttl_ms": 1500}})";
  orch::testing::ServePair pair(ORCH_CLI, pg.uri(), "sse-failover", [&](const std::string&, const auto&) { return config; });
  REQUIRE(pair.start());
  ServeProcess& a = pair.a();
  ServeProcess& b = pair.b();
  httplib::Client& ca = pair.ca();
  httplib::Client& cb = pair.cb();
  auto created = ca.Post("/workflows", R"({"id": "six", "state_schema": {"log": {"type": "array", "reducer": "append"}},
    "nodes": {"s1": {"prompt_template": "one", "output_key": "log"},
              "s2": {"prompt_template": "two", "output_key": "log"},
              "s3": {"prompt_template": "three", "output_key": "log"},
              "s4": {"prompt_template": "four", "output_key": "log"},
              "s5": {"prompt_template": "five", "output_key": "log"},
              "s6": {"prompt_template": "six", "output_key": "log"}},
    "edges": [["__start__","s1"],["s1","s2"],["s2","s3"],["s3","s4"],["s4","s5"],["s5","s6"],["s6","__end__"]]})",
                         "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 201);
  auto started = ca.Post("/workflows/six/run", R"({"input": {}})", "application/json");
  REQUIRE(started);
  REQUIRE(started->status == 201);
  const std::string run_id = orch::parse_json(started->body)->find("id")->as_string();

  // Through B, from the start: a few events, then the client goes away.
  bool ended = false;
  std::vector<StreamedEvent> first = stream_events(b.port(), run_id, 0, 3, &ended);
  INFO("B: " << b.log_tail());
  REQUIRE(first.size() >= 3);
  CHECK_FALSE(ended);
  // A is still executing the run (its second step at the earliest): kill it.
  REQUIRE(worker.wait_for_calls(2, 60s));
  REQUIRE(get_json(cb, "/runs/" + run_id)["status"].get_string("") == "running");
  a.kill_hard();

  // Back to B after the last event the client has; B takes the run over
  // once A's lease runs out, and the stream ends with the run.
  std::vector<StreamedEvent> second = stream_events(b.port(), run_id, first.back().id, 0, &ended);
  CHECK(ended);
  Value run = get_json(cb, "/runs/" + run_id);
  CHECK(run["status"].get_string("") == "completed");
  CHECK(run["state_json"]["log"].size() == 6u);

  std::vector<StreamedEvent> all = first;
  all.insert(all.end(), second.begin(), second.end());
  REQUIRE_FALSE(second.empty());
  CHECK(all.front().id == 1);
  for (size_t i = 1; i < all.size(); ++i) {
    INFO("event " << i << " of " << all.size());
    CHECK(all[i].id == all[i - 1].id + 1);  // no gap, no duplicate
  }
  CHECK(all.back().kind == "run.completed");
  // And they are every event the run has.
  Value stored = get_json(cb, "/runs/" + run_id + "/events?limit=1000");
  REQUIRE(stored.is_array());
  CHECK(stored.size() == all.size());
  b.terminate();
  std::filesystem::remove_all(pair.dir());
}
