// SPDX-License-Identifier: MIT
// `orch serve` on SQLite is killed with SIGKILL while runs wait on a worker;
// after a restart the runs continue and complete.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <httplib.h>

#include "catch.h"
#include "orch/id.h"
#include "support/brokers.h"
#include "support/fake_workers.h"
#include "support/serve_process.h"

#ifndef ORCH_CLI
#error "ORCH_CLI must name the orch program"
#endif

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::ServeProcess;

TEST_CASE("the server is killed during runs, and after a restart they complete", "[server][restart]") {
  orch::testing::FakeWorker worker;
  orch::testing::FakeReply slow;
  slow.delay_ms = 150;
  worker.set_default(slow);
  auto dir = std::filesystem::temp_directory_path() / ("orch-restart-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  std::string db = (dir / "orch.db").string();
  std::string config = (dir / "config.json").string();
  std::ofstream(config) << R"({"workers": [{"id": "w", "url": ")" << worker.url()
                        << R"(", "token": "", "max_concurrent": 20}]})";
  int port = orch::testing::free_loopback_port();
  ServeProcess server(ORCH_CLI, port, db, config);
  REQUIRE(server.start());
  httplib::Client c("127.0.0.1", port);
  REQUIRE(c.Post("/workflows", R"({"id": "three", "state_schema": {"log": {"type": "array", "reducer": "append"}},
    "nodes": {"a": {"prompt_template": "a", "output_key": "log"}, "b": {"prompt_template": "b", "output_key": "log"},
              "c": {"prompt_template": "c", "output_key": "log"}},
    "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})", "application/json")->status == 201);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = c.Post("/workflows/three/run", "{}", "application/json");
    REQUIRE(r->status == 201);
    ids.push_back(orch::parse_json(r->body)->find("id")->as_string());
  }
  std::this_thread::sleep_for(250ms);  // mid-way: some nodes done, some waiting on the worker
  server.kill_hard();

  int port2 = orch::testing::free_loopback_port();
  ServeProcess restarted(ORCH_CLI, port2, db, config);
  REQUIRE(restarted.start());
  httplib::Client c2("127.0.0.1", port2);
  for (const std::string& id : ids) {
    Value run;
    for (int i = 0; i < 1000; ++i) {
      auto r = c2.Get(("/runs/" + id).c_str());
      REQUIRE(r);
      run = *orch::parse_json(r->body);
      if (run["status"].as_string() != "running") break;
      std::this_thread::sleep_for(10ms);
    }
    INFO(run.to_json());
    CHECK(run["status"].as_string() == "completed");
    CHECK(run["state_json"]["log"].to_json() == R"(["echo: a","echo: b","echo: c"])");
  }
  restarted.terminate();
  std::filesystem::remove_all(dir);
}
