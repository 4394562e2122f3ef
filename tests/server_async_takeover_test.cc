// SPDX-License-Identifier: MIT
// Two `orch serve` processes on one PostgreSQL database with a redis_stream
// worker (issue #21: "durable MQTT/Redis replies reach whichever instance
// owns the run"): A publishes a node's request and is killed (SIGKILL) before
// the worker replies; the worker replies to A's reply stream; B takes the run
// over once A's lease runs out, waits for that reply instead of sending the
// request again, and completes the run, with the worker having done the work
// once.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <httplib.h>

#include "catch.h"
#include "orch/id.h"
#include "orch/value.h"
#include "support/broker_workers.h"
#include "support/brokers.h"
#include "support/postgres_cluster.h"
#include "support/serve_process.h"

#ifndef ORCH_CLI
#error "ORCH_CLI must name the orch program"
#endif

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::ServeProcess;

namespace {

Value get_json(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path.c_str());
  if (!r || r->status != 200) return Value();
  auto parsed = orch::parse_json(r->body);
  return parsed.ok() ? *parsed : Value();
}

}  // namespace

TEST_CASE("a redis_stream reply sent to a killed orch serve reaches the instance that took the run over", "[server][postgres][redis][async]") {
  if (!orch::testing::RedisBroker::available()) {
    std::fprintf(stderr, "skipped: redis-server is not installed\n");
    WARN("skipped: redis-server is not installed");
    return;
  }
  auto shared = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  orch::testing::PostgresCluster& pg = **shared;

  orch::testing::RedisBroker broker;
  orch::testing::RedisTestWorker worker(broker.port(), "orch:work");
  REQUIRE(worker.wait_ready(10s));
  worker.hold(true);

  auto dir = std::filesystem::temp_directory_path() / ("orch-async-takeover-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  // Each instance its own state dir, as in a deployment: its own stable
  // instance name on the broker.
  auto config_for = [&](const std::string& name) {
    const std::string path = (dir / (name + ".json")).string();
    std::ofstream(path) << R"({"workers": [{"id": "rs", "protocol": "redis_stream", "url": "redis://127.0.0.1:)"
                        << broker.port() << R"(/orch:work", "max_concurrent": 5}],
      "state_dir": ")" << (dir / name).string() << R"(",
      "postgres": {"schema": "serve_async_takeover"}, "engine": {"lease_ttl_ms": 1000}})";
    return path;
  };
  const std::string db = pg.uri();
  ServeProcess a(ORCH_CLI, orch::testing::free_loopback_port_for_restarts(), db, config_for("a"),
                 (dir / "a.log").string());
  ServeProcess b(ORCH_CLI, orch::testing::free_loopback_port_for_restarts(), db, config_for("b"),
                 (dir / "b.log").string());
  REQUIRE(a.start());
  REQUIRE(b.start());
  httplib::Client ca("127.0.0.1", a.port());
  httplib::Client cb("127.0.0.1", b.port());
  ca.set_read_timeout(30, 0);
  cb.set_read_timeout(30, 0);
  auto created = ca.Post("/workflows", R"({"id": "one", "state_schema": {"log": {"type": "array", "reducer": "append"}},
    "nodes": {"a": {"prompt_template": "alpha-{{input.tag}}", "output_key": "log"}},
    "edges": [["__start__","a"],["a","__end__"]]})", "application/json");
  REQUIRE(created);
  INFO(created->body);
  REQUIRE(created->status == 201);
  auto started = ca.Post("/workflows/one/run", R"({"input": {"tag": "t1"}})", "application/json");
  REQUIRE(started);
  REQUIRE(started->status == 201);
  const std::string id = orch::parse_json(started->body)->find("id")->as_string();

  // A's request is with the worker: kill A, then the worker replies (to A's stream).
  REQUIRE(worker.wait_for_requests(1, 30s));
  a.kill_hard();
  worker.hold(false);  // a request sent again would be answered (and counted)
  worker.release_held();

  // B takes the run over and completes it with that reply.
  Value run;
  for (int i = 0; i < 3000; ++i) {
    run = get_json(cb, "/runs/" + id);
    if (run["status"].get_string("") != "running" && run["status"].get_string("") != "pending") break;
    std::this_thread::sleep_for(10ms);
  }
  INFO(run.to_json() << "\nB: " << b.log_tail());
  REQUIRE(run["status"].get_string("") == "completed");
  CHECK(run["state_json"]["log"].to_json() == "[\"echo: alpha-t1\"]");
  CHECK(worker.requests().size() == 1);  // the work was done once
  b.terminate();
  std::filesystem::remove_all(dir);
}
