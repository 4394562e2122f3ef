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
#include "support/fake_nulltickets.h"
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

namespace {

Value get_json(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path.c_str());
  if (!r || r->status != 200) return Value();
  auto parsed = orch::parse_json(r->body);
  return parsed.ok() ? *parsed : Value();
}

template <typename Pred>
bool within(std::chrono::milliseconds limit, Pred done) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

}  // namespace

// Pull mode (NullTickets): the instance that claimed a task holds its lease,
// reports its result and (subprocess) runs its agent. After a crash nothing of
// that is left: the task's run must not be resumed (the work would be done
// twice, the result reported to nobody); NullTickets offers the task again
// once the lease runs out, and it runs once more, reported.
TEST_CASE("after a crash a pull-mode run is failed, not resumed, and the task runs again once", "[server][restart][tracker]") {
  orch::testing::FakeNullTickets nt;
  nt.add_pipeline("dev", {{"backlog", "coder"}, {"review", "reviewer"}}, {{"backlog", "review", "complete"}});
  nt.add_task(Value::object({{"id", "T1"}, {"pipeline_id", "dev"}, {"stage", "backlog"}, {"title", "Fix it"}}));
  orch::testing::FakeWorker worker;
  orch::testing::FakeReply hang;
  hang.hang = true;
  worker.push(hang);  // the first run's call never answers: the crash comes first
  auto dir = std::filesystem::temp_directory_path() / ("orch-pull-restart-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  const std::string db = (dir / "orch.db").string();
  const std::string config = (dir / "config.json").string();
  Value graph = *orch::parse_json(R"({"nodes": {"work": {"type": "task", "prompt_template": "Do {{task.title}}", "output_key": "result"}},
    "edges": [["__start__","work"],["work","__end__"]],
    "state_schema": {"result": {"type": "string", "reducer": "last_value"}}})");
  Value tracker = Value::object(
      {{"url", nt.url()},
       {"agent_id", "orch-test"},
       {"poll_interval_ms", 20},
       {"heartbeat_interval_ms", 100},
       {"lease_ttl_ms", 1000},
       {"http_timeout_ms", 2000},
       {"workspace", Value::object({{"root", (dir / "ws").string()}})},
       {"pipelines", Value::array({Value::object({{"pipeline_id", "dev"},
                                                  {"claim_roles", Value::array({"coder"})},
                                                  {"execution", "dispatch"},
                                                  {"workflow", graph},
                                                  {"on_success", Value::object({{"transition_to", "complete"}})}})})}});
  Value workers = Value::array({Value::object({{"id", "w"}, {"url", worker.url()}, {"token", ""}, {"max_concurrent", 4}})});
  std::ofstream(config) << Value::object({{"workers", workers}, {"tracker", tracker}}).to_json();

  ServeProcess first(ORCH_CLI, orch::testing::free_loopback_port_for_restarts(), db, config, (dir / "orch.log").string());
  REQUIRE(first.start());
  REQUIRE(worker.wait_for_calls(1, 20s));
  httplib::Client c1("127.0.0.1", first.port());
  Value listed = get_json(c1, "/runs");
  const Value& runs = listed["items"];
  INFO(listed.to_json());
  REQUIRE(runs.size() == 1);
  const std::string old_run = (*runs.at(0))["id"].get_string("");
  first.kill_hard();

  ServeProcess second(ORCH_CLI, orch::testing::free_loopback_port_for_restarts(), db, config, (dir / "orch.log").string());
  REQUIRE(second.start());
  httplib::Client c2("127.0.0.1", second.port());
  Value old;
  CHECK(within(10s, [&] {
    old = get_json(c2, "/runs/" + old_run);
    return old["status"].get_string("") == "failed";
  }));
  INFO(old.to_json());
  CHECK(old["error_text"].get_string("").find("pull-mode run of NullTickets task T1 not resumed") != std::string::npos);
  // Once the dead instance's lease ran out, the task was claimed again and
  // its new run called the worker (answered this time) and was reported.
  CHECK(within(20s, [&] { return nt.task("T1")["stage"].get_string("") == "review"; }));
  auto calls = worker.calls();
  REQUIRE(calls.size() == 2);  // the old run's call was not sent again
  CHECK(calls[0].json["session_key"].get_string("").find(old_run) != std::string::npos);
  CHECK(calls[1].json["session_key"].get_string("").find(old_run) == std::string::npos);
  CHECK(nt.count("POST", "/transition") == 1);
  second.terminate();
  worker.stop();
  std::filesystem::remove_all(dir);
}
