// SPDX-License-Identifier: MIT
// Two `orch serve` processes on one PostgreSQL database with a redis_stream
// or an mqtt worker (issue #21: "durable MQTT/Redis replies reach whichever instance
// owns the run"): A publishes a node's request and is killed (SIGKILL) before
// the worker replies; the worker replies to A's reply stream (topic); B takes the run
// over once A's lease runs out, waits for that reply instead of sending the
// request again, and completes the run, with the worker having done the work
// once.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include <httplib.h>

#include "catch.h"
#include "orch/id.h"
#include "orch/value.h"
#include "workers/async/redis_call_routes.h"
#include "workers/async/redis_client.h"
#include "support/broker_workers.h"
#include "support/brokers.h"
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

}  // namespace

// `restart_a` (redis only): A comes back (same state dir, same instance name)
// after B adopted the calls and before the worker replies: A's reader (started
// with its workers) reads the replies on its stream and passes them on to B,
// unless B's look at A's stream took them first; either way A must not keep
// them. (async_shared_runs_test checks the passing on by itself.)
static void check_takeover(bool mqtt, bool restart_a = false) {
  const bool installed =
      mqtt ? orch::testing::MosquittoBroker::available() : orch::testing::RedisBroker::available();
  if (!installed) {
    const std::string why = mqtt ? "skipped: mosquitto is not installed" : "skipped: redis-server is not installed";
    std::fprintf(stderr, "%s\n", why.c_str());
    WARN(why);
    return;
  }
  auto shared = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  orch::testing::PostgresCluster& pg = **shared;

  std::unique_ptr<orch::testing::BrokerProcess> broker;
  std::unique_ptr<orch::testing::TestWorkerBase> test_worker;
  std::string url;
  if (mqtt) {
    broker = std::make_unique<orch::testing::MosquittoBroker>();
    auto w = std::make_unique<orch::testing::MqttTestWorker>(broker->port(), "work/jobs");
    REQUIRE(w->wait_subscribed(10s));
    test_worker = std::move(w);
    url = "mqtt://127.0.0.1:" + std::to_string(broker->port()) + "/work/jobs";
  } else {
    broker = std::make_unique<orch::testing::RedisBroker>();
    auto w = std::make_unique<orch::testing::RedisTestWorker>(broker->port(), "orch:work");
    REQUIRE(w->wait_ready(10s));
    test_worker = std::move(w);
    url = "redis://127.0.0.1:" + std::to_string(broker->port()) + "/orch:work";
  }
  orch::testing::TestWorkerBase& worker = *test_worker;
  worker.hold(true);
  const std::string schema = std::string("serve_async_takeover_") + (mqtt ? "mqtt" : "redis") + (restart_a ? "_restart" : "");

  // Each instance its own state dir, as in a deployment: its own stable
  // instance name on the broker.
  auto config_for = [&](const std::string& name, const std::filesystem::path& dir) {
    return std::string(R"({"workers": [{"id": "w", "protocol": ")") + (mqtt ? "mqtt" : "redis_stream") +
           R"(", "url": ")" + url + R"(", "max_concurrent": 5}],
      "state_dir": ")" + (dir / name).string() + R"(",
      "postgres": {"schema": ")" + schema + R"("}, "engine": {"lease_ttl_ms": 1000}})";
  };
  orch::testing::ServePair pair(ORCH_CLI, pg.uri(), "async-takeover", config_for);
  REQUIRE(pair.start());
  ServeProcess& a = pair.a();
  ServeProcess& b = pair.b();
  httplib::Client& ca = pair.ca();
  httplib::Client& cb = pair.cb();
  orch::testing::create_two_node_workflow(ca);
  constexpr int kRuns = 3;
  const std::vector<std::string> ids = orch::testing::start_tagged_runs(ca, kRuns, "t");

  // A's requests for node a are with the worker: kill A, then the worker
  // replies (to A's reply channel).
  REQUIRE(worker.wait_for_requests(kRuns, 30s));
  a.kill_hard();
  if (restart_a) {
    // B adopted every call (its route names B as the owner, A as the origin).
    orch::internal::SigpipeGuard sigpipe;
    auto redis = orch::internal::RedisClient::connect("127.0.0.1", broker->port(), 2s, 2s);
    REQUIRE(redis.ok());
    auto adopted = [&] {
      auto keys = (*redis)->command({"KEYS", "orch:call:*"});
      if (!keys.ok() || keys->elements.size() != static_cast<size_t>(kRuns)) return false;
      for (const auto& key : keys->elements) {
        auto value = (*redis)->command({"GET", key.str});
        if (!value.ok()) return false;
        auto route = orch::internal::parse_call_route(value->str);
        if (!route || route->owner == route->origin) return false;
      }
      return true;
    };
    bool all_adopted = false;
    for (int k = 0; k < 3000 && !all_adopted; ++k) {
      all_adopted = adopted();
      if (!all_adopted) std::this_thread::sleep_for(10ms);
    }
    INFO("B: " << b.log_tail());
    REQUIRE(all_adopted);
    REQUIRE(a.start());
  }
  worker.hold(false);  // a request sent again would be answered (and counted)
  worker.release_held();

  // B takes the runs over and completes them with those replies (node b it
  // sends itself).
  for (int i = 0; i < kRuns; ++i) {
    const std::string tag = "t" + std::to_string(i);
    Value run;
    for (int k = 0; k < 3000; ++k) {
      run = get_json(cb, "/runs/" + ids[static_cast<size_t>(i)]);
      if (run["status"].get_string("") != "running" && run["status"].get_string("") != "pending") break;
      std::this_thread::sleep_for(10ms);
    }
    INFO(run.to_json() << "\nB: " << b.log_tail());
    REQUIRE(run["status"].get_string("") == "completed");
    CHECK(run["state_json"]["log"].to_json() == "[\"echo: alpha-" + tag + "\",\"echo: beta-" + tag + "\"]");
  }
  // Every node's work was done once.
  std::map<std::string, int> asked;
  for (const auto& request : worker.requests()) ++asked[request.payload["message"].get_string("")];
  CHECK(worker.requests().size() == 2 * kRuns);
  for (int i = 0; i < kRuns; ++i) {
    const std::string tag = "t" + std::to_string(i);
    CHECK(asked["alpha-" + tag] == 1);
    CHECK(asked["beta-" + tag] == 1);
  }
  if (restart_a) {
    INFO("A: " << a.log_tail());
    for (const std::string& id : ids) CHECK(get_json(ca, "/runs/" + id)["status"].get_string("") == "completed");
    a.terminate();
  }
  b.terminate();
  std::filesystem::remove_all(pair.dir());
}

TEST_CASE("a redis_stream reply sent to a killed orch serve reaches the instance that took the run over", "[server][postgres][redis][async]") {
  check_takeover(false);
}

TEST_CASE("a redis_stream reply that reaches the restarted instance which lost the run goes to the new owner", "[server][postgres][redis][async]") {
  check_takeover(false, true);
}

TEST_CASE("an mqtt reply sent to a killed orch serve reaches the instance that took the run over", "[server][postgres][mqtt][async]") {
  check_takeover(true);
}
