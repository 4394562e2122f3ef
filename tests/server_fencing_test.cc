// SPDX-License-Identifier: MIT
// Two `orch serve` processes on one PostgreSQL database (issue #21): one is
// paused with SIGSTOP while its runs wait on a slow worker; the other takes
// the runs over once their leases run out and completes them; the paused one
// is let go (SIGCONT): every write it then attempts for those runs is
// refused, it drops them, and each run completes exactly once.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

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

int calls_with(const orch::testing::FakeWorker& worker, const std::string& marker, const std::string& without = "") {
  int n = 0;
  for (const auto& call : worker.calls()) {
    if (call.body.find(marker) == std::string::npos) continue;
    if (!without.empty() && call.body.find(without) != std::string::npos) continue;
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("a paused orch serve loses its runs to another instance and writes nothing more for them", "[server][postgres][lease]") {
  auto shared = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  orch::testing::PostgresCluster& pg = **shared;

  orch::testing::FakeWorker worker;
  orch::testing::FakeReply slow;
  slow.delay_ms = 1500;  // longer than A stays up after the runs start
  worker.set_default(slow);
  const std::string config = std::string(R"({"workers": [{"id": "w", "url": ")") + worker.url() +
                             R"(", "token": "", "max_concurrent": 20}],
    "postgres": {"schema": "serve_fencing"}, "engine": {"lease_ttl_ms": 1500}})";
  orch::testing::ServePair pair(ORCH_CLI, pg.uri(), "fencing", [&](const std::string&, const auto&) { return config; });
  REQUIRE(pair.start());
  ServeProcess& a = pair.a();
  ServeProcess& b = pair.b();
  httplib::Client& ca = pair.ca();
  httplib::Client& cb = pair.cb();
  orch::testing::create_two_node_workflow(ca);
  constexpr int kRuns = 4;
  const std::vector<std::string> ids = orch::testing::start_tagged_runs(ca, kRuns, "r");
  // Every run's first node is in flight at A: pause A.
  REQUIRE(worker.wait_for_calls(kRuns, 30s));
  REQUIRE(::kill(a.pid(), SIGSTOP) == 0);

  // B takes them over once A's leases run out, and completes them.
  for (const std::string& id : ids) {
    Value run;
    for (int i = 0; i < 3000; ++i) {
      run = get_json(cb, "/runs/" + id);
      if (run["status"].get_string("") != "running" && run["status"].get_string("") != "pending") break;
      std::this_thread::sleep_for(10ms);
    }
    INFO(run.to_json() << "\nB: " << b.log_tail());
    REQUIRE(run["status"].get_string("") == "completed");
  }
  const size_t calls_before_resume = worker.calls().size();

  // A goes on: its worker replies arrive, its writes are refused, it drops the runs.
  REQUIRE(::kill(a.pid(), SIGCONT) == 0);
  // A answers again once it has handled what was waiting for it.
  bool a_up = false;
  for (int i = 0; i < 3000 && !a_up; ++i) {
    auto h = ca.Get("/health");
    a_up = h && h->status == 200;
    if (!a_up) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(a_up);
  // Give A's engine threads the time to act on the replies (a wait, not an assertion on time).
  std::this_thread::sleep_for(2s);

  INFO("A: " << a.log_tail());
  CHECK(worker.calls().size() == calls_before_resume);  // A called no worker again
  for (int i = 0; i < kRuns; ++i) {
    const std::string tag = "r" + std::to_string(i);
    // Node a ran twice (A's call, abandoned; B's), node b once, on B.
    CHECK(calls_with(worker, "alpha-" + tag, "beta-" + tag) == 2);
    CHECK(calls_with(worker, "beta-" + tag) == 1);
    const std::string& id = ids[static_cast<size_t>(i)];
    Value run = get_json(ca, "/runs/" + id);  // through A: it reads what B wrote
    CHECK(run["status"].get_string("") == "completed");
    CHECK(run["state_json"]["log"].to_json() == "[\"echo: alpha-" + tag + "\",\"echo: beta-" + tag + "\"]");
    Value events = get_json(cb, "/runs/" + id + "/events?limit=1000");
    REQUIRE(events.is_array());
    int completed = 0, a_results = 0;
    for (const Value& e : events.as_array()) {
      const std::string kind = e["kind"].get_string(e["event_type"].get_string(""));
      if (kind == "run.completed") ++completed;
      if (kind == "task_result" && e["data"]["name"].get_string("") == "a") ++a_results;
    }
    CHECK(completed == 1);
    CHECK(a_results == 1);  // B's only: A's result of node a was refused
  }
  a.terminate();
  b.terminate();
  std::filesystem::remove_all(pair.dir());
}
