// SPDX-License-Identifier: MIT
// orch serve on PostgreSQL: --db / "db" with a postgres:// or postgresql://
// URI selects the PostgreSQL store; runs and workflows outlive a restart.
#include <chrono>
#include <functional>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "catch.h"
#include "app.h"
#include "config.h"
#include "support/fake_workers.h"
#include "support/postgres_cluster.h"
#include "support/postgres_test_helpers.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"
#include "worker_health_share.h"

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::json_body;
using orch::testing::TestServer;

namespace {

const char* kLinear = R"({"id": "linear", "name": "Linear",
  "state_schema": {"log": {"type": "array", "reducer": "append"}, "n": {"type": "number", "reducer": "add"}},
  "nodes": {"a": {"type": "transform", "updates": {"log": ["a"], "n": 1}},
            "b": {"type": "transform", "updates": {"log": ["b"], "n": 2}}},
  "edges": [["__start__", "a"], ["a", "b"], ["b", "__end__"]]})";

// Pauses at "gate" until resumed.
const char* kPaused = R"({"id": "paused", "name": "Paused",
  "state_schema": {"log": {"type": "array", "reducer": "append"}, "n": {"type": "number", "reducer": "add"}},
  "nodes": {"a": {"type": "transform", "updates": {"log": ["a"], "n": 1}},
            "gate": {"type": "interrupt"},
            "b": {"type": "transform", "updates": {"log": ["b"], "n": 2}}},
  "edges": [["__start__", "a"], ["a", "gate"], ["gate", "b"], ["b", "__end__"]]})";

Value wait_run(httplib::Client& c, const std::string& id) {
  for (int i = 0; i < 1000; ++i) {
    Value run = json_body(c.Get(("/runs/" + id).c_str()));
    if (run["status"].as_string() != "running" && run["status"].as_string() != "pending") return run;
    std::this_thread::sleep_for(5ms);
  }
  FAIL("run did not stop");
  return Value();
}

}  // namespace

TEST_CASE("orch serve on a postgresql:// URI runs a workflow and reads it back after a restart", "[server][postgres]") {
  orch::testing::PostgresCluster& pg = orch::testing::require_postgres();
  orch::server::ServerConfig config;
  config.db = pg.uri();  // postgresql:///orch?host=<socket dir>&port=...&user=postgres
  REQUIRE(orch::is_postgres_uri(config.db));
  config.postgres.schema = "serve_restart";
  std::string id;
  {
    TestServer server(config);
    auto c = server.client();
    auto created = c->Post("/workflows", kLinear, "application/json");
    REQUIRE(created);
    REQUIRE(created->status == 201);
    auto r = c->Post("/workflows/linear/run", R"({"input": {"n": 10}})", "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 201);
    id = json_body(r)["id"].as_string();
    Value run = wait_run(*c, id);
    CHECK(run["status"].as_string() == "completed");
    CHECK(run["state_json"]["n"].as_int() == 13);
  }
  // Nothing of it was in a file: the SQLite default would have made orch.db.
  CHECK_FALSE(std::filesystem::exists("orch.db"));
  TestServer again(config);
  auto c = again.client();
  Value run = json_body(c->Get(("/runs/" + id).c_str()));
  CHECK(run["status"].as_string() == "completed");
  CHECK(run["state_json"]["n"].as_int() == 13);
  CHECK(run["state_json"]["log"].to_json() == R"(["a","b"])");
  CHECK(json_body(c->Get("/workflows/linear"))["id"].as_string() == "linear");
  Value events = json_body(c->Get(("/runs/" + id + "/events").c_str()));
  REQUIRE(events.is_array());
  CHECK(events.size() >= 3);
  // The same run through a second instance on the same database.
  TestServer other(config);
  auto c2 = other.client();
  CHECK(json_body(c2->Get(("/runs/" + id).c_str()))["status"].as_string() == "completed");
}

TEST_CASE("the config file's db may be a PostgreSQL URI, with postgres settings and a state dir", "[server][postgres][config]") {
  auto dir = std::filesystem::temp_directory_path() / ("orch-pg-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "config.json").string();
  {
    std::ofstream out(path);
    out << R"({"db": "postgresql://orch:s3cret@db.internal:5433/orch?sslmode=require",
               "postgres": {"max_connections": 4, "statement_timeout_ms": 5000, "schema": "tenant_a",
                            "announce_events": false, "group_commit_writers": 3},
               "state_dir": "state"})";
  }
  orch::server::ServerConfig config;
  REQUIRE(orch::server::load_config_file(path, &config).ok());
  // Not anchored to the config file's directory as a SQLite path would be.
  CHECK(config.db == "postgresql://orch:s3cret@db.internal:5433/orch?sslmode=require");
  CHECK(config.postgres.max_connections == 4u);
  CHECK(config.postgres.statement_timeout_ms == 5000);
  CHECK(config.postgres.schema == "tenant_a");
  CHECK_FALSE(config.postgres.announce_events);
  CHECK(config.postgres.group_commit_writers == 3u);
  CHECK(config.state_dir == (dir / "state").string());
  // Logs and owner ids never carry the password.
  CHECK(orch::server::redacted_db(config.db) == "postgresql://orch:***@db.internal:5433/orch?sslmode=require");
  CHECK(orch::server::redacted_db("postgres:///orch?host=/run/postgresql&password=x&user=u") ==
        "postgres:///orch?host=/run/postgresql&password=***&user=u");
  CHECK(orch::server::redacted_db("/var/lib/orch/orch.db") == "/var/lib/orch/orch.db");
  {
    std::ofstream out(path);
    out << R"({"postgres": {"pool": 4}})";
  }
  CHECK(orch::server::load_config_file(path, &config).code() == orch::StatusCode::kInvalidArgument);
  {
    std::ofstream out(path);
    out << R"({"postgres": {"announce_events": 0}})";
  }
  CHECK(orch::server::load_config_file(path, &config).code() == orch::StatusCode::kInvalidArgument);
  // Announcements: only runs a stream follows by default; "followed", true, false.
  CHECK(orch::server::ServerConfig().postgres.announce_followed_only);
  CHECK(orch::server::ServerConfig().postgres.announce_events);
  for (const auto& [setting, announce, followed_only] :
       std::vector<std::tuple<std::string, bool, bool>>{{"true", true, false}, {"\"followed\"", true, true}, {"false", false, false}}) {
    {
      std::ofstream out(path);
      out << R"({"postgres": {"announce_events": )" << setting << "}}";
    }
    orch::server::ServerConfig announced;
    REQUIRE(orch::server::load_config_file(path, &announced).ok());
    CHECK(announced.postgres.announce_events == announce);
    CHECK(announced.postgres.announce_followed_only == followed_only);
  }
  {
    std::ofstream out(path);
    out << R"({"postgres": {"announce_events": "sometimes"}})";
  }
  CHECK(orch::server::load_config_file(path, &config).code() == orch::StatusCode::kInvalidArgument);
  for (const char* bad : {R"(-1)", R"("2")", R"(1e300)"}) {
    {
      std::ofstream out(path);
      out << R"({"postgres": {"group_commit_writers": )" << bad << "}}";
    }
    CHECK(orch::server::load_config_file(path, &config).code() == orch::StatusCode::kInvalidArgument);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("orch serve on an unreachable PostgreSQL fails to start with a clear error", "[server][postgres]") {
  orch::server::ServerConfig config;
  config.db = "postgresql:///orch?host=/nonexistent-orch-socket-dir";
  config.postgres.connect_timeout_s = 2;
  auto app = orch::server::open_app(config, nullptr);
  REQUIRE_FALSE(app.ok());
  CHECK(app.status().code() == orch::StatusCode::kUnavailable);
  CHECK(app.status().message().find("/nonexistent-orch-socket-dir") != std::string::npos);
}

TEST_CASE("two orch serve on one PostgreSQL: B's stream follows a run A executes and is woken by its events, Last-Event-ID exact", "[server][postgres][sse]") {
  orch::testing::PostgresCluster& pg = orch::testing::require_postgres();
  orch::server::ServerConfig config;
  config.db = pg.uri();
  config.postgres.schema = "serve_two_streams";
  TestServer a(config);
  TestServer b(config);
  REQUIRE(b.app().store_watch != nullptr);
  auto ca = a.client();
  auto cb = b.client();
  REQUIRE(ca->Post("/workflows", kPaused, "application/json")->status == 201);
  std::string id = json_body(ca->Post("/workflows/paused/run", R"({"input": {"n": 1}})", "application/json"))["id"].as_string();
  CHECK(wait_run(*ca, id)["status"].as_string() == "interrupted");
  // A stream through B follows the run (A announces the writes of followed
  // runs only) until it ends, with the run.
  std::thread follower([&] {
    auto stream = b.client();
    (void)stream->Get(("/runs/" + id + "/stream").c_str(), {{"Accept", "text/event-stream"}});
  });
  auto followers = [&] {
    auto records = b.app().store->list_host_records("orch.followers");
    REQUIRE(records.ok());
    return Value(orch::Array(records->begin(), records->end())).to_json();
  };
  for (int i = 0; i < 1000 && followers().find(id) == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(followers().find(id) != std::string::npos);
  const uint64_t before = b.app().hub.published();
  REQUIRE(ca->Post(("/runs/" + id + "/resume").c_str(), "{}", "application/json")->status < 300);
  CHECK(wait_run(*ca, id)["status"].as_string() == "completed");
  // B executes nothing: only the database's notifications can wake its hub.
  for (int i = 0; i < 1000 && b.app().hub.published() == before; ++i) std::this_thread::sleep_for(10ms);
  CHECK(b.app().hub.published() > before);
  follower.join();
  // The stream ended: B follows nothing any more.
  for (int i = 0; i < 1000 && followers() != "[]"; ++i) std::this_thread::sleep_for(10ms);
  CHECK(followers() == "[]");
  // The stream through B, resumed after event 2: every later event once, in order.
  Value all = json_body(cb->Get(("/runs/" + id + "/events").c_str()));
  REQUIRE(all.is_array());
  REQUIRE(all.size() >= 4);
  auto streamed = cb->Get(("/runs/" + id + "/stream").c_str(), {{"Last-Event-ID", "2"}, {"Accept", "text/event-stream"}});
  REQUIRE(streamed);
  std::vector<long long> ids;
  std::istringstream lines(streamed->body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("id: ", 0) == 0) ids.push_back(std::stoll(line.substr(4)));
  }
  REQUIRE_FALSE(ids.empty());
  CHECK(ids.front() == 3);
  for (size_t i = 1; i < ids.size(); ++i) CHECK(ids[i] == ids[i - 1] + 1);
}

TEST_CASE("instances sharing a database have their own async instance names, stable across restarts", "[server][postgres][async]") {
  orch::server::ServerConfig a;
  a.db = "postgresql:///orch?host=/run/pg";
  a.state_dir = "/var/lib/orch-a";
  orch::server::ServerConfig b = a;
  b.state_dir = "/var/lib/orch-b";
  // Different broker client ids and reply topics for A and B...
  CHECK(orch::server::async_instance_name(a) != orch::server::async_instance_name(b));
  // ...and the same for A before and after a restart.
  CHECK(orch::server::async_instance_name(a) == orch::server::async_instance_name(orch::server::ServerConfig(a)));
  // A SQLite server without a state_dir keeps the name it always had (its
  // replies in flight survive the upgrade): host and database only.
  orch::server::ServerConfig sqlite;
  sqlite.db = "/var/lib/orch/orch.db";
  const std::string name = orch::server::async_instance_name(sqlite);
  sqlite.state_dir = "/var/lib/orch";
  CHECK(orch::server::async_instance_name(sqlite) != name);
  for (char ch : name) CHECK((std::isalnum(static_cast<unsigned char>(ch)) || ch == '-'));
}

TEST_CASE("two orch serve on one PostgreSQL: a worker registered or removed through one is known to the other", "[server][postgres][workers]") {
  orch::testing::PostgresCluster& pg = orch::testing::require_postgres();
  orch::server::ServerConfig config;
  config.db = pg.uri();
  config.postgres.schema = "serve_two_workers";
  TestServer a(config);
  TestServer b(config);
  auto ca = a.client();
  auto cb = b.client();
  auto has_worker = [](httplib::Client& c, const std::string& id) {
    return json_body(c.Get("/workers")).to_json().find("\"" + id + "\"") != std::string::npos;
  };
  auto eventually = [](const std::function<bool()>& check) {
    for (int i = 0; i < 1000; ++i) {
      if (check()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  };
  REQUIRE(ca->Post("/workers", R"({"id": "shared", "url": "http://127.0.0.1:9/webhook", "tags": ["a"]})", "application/json")->status == 201);
  CHECK(eventually([&] { return has_worker(*cb, "shared"); }));
  // The same id through B is taken: B knows it now.
  CHECK(cb->Post("/workers", R"({"id": "shared", "url": "http://127.0.0.1:9/other"})", "application/json")->status == 409);
  REQUIRE(cb->Delete("/workers/shared")->status == 200);
  CHECK(eventually([&] { return !has_worker(*ca, "shared"); }));
}

TEST_CASE("two orch serve on one PostgreSQL: a worker's rate-limit report to one shows on the other", "[server][postgres][workers]") {
  orch::testing::PostgresCluster& pg = orch::testing::require_postgres();
  orch::testing::FakeWorker worker;
  orch::testing::FakeReply reply;
  reply.fields = Value::object({{"rate_limit", Value::object({{"remaining", 7}, {"limit", 10}, {"reset_ms", 500}})}});
  worker.set_default(reply);
  orch::server::ServerConfig config;
  config.db = pg.uri();
  config.postgres.schema = "serve_two_rate_limits";
  config.workers = *orch::parse_json(std::string(R"([{"id": "limited", "url": ")") + worker.url() +
                                     R"(", "tags": ["writer"]}])");
  TestServer a(config);
  TestServer b(config);
  auto ca = a.client();
  auto cb = b.client();
  auto run = ca->Post("/runs", R"({"workflow": {
      "state_schema": {"draft": {"type": "string"}},
      "nodes": {"write": {"type": "task", "worker_tags": ["writer"], "output_key": "draft", "prompt_template": "x"}},
      "edges": [["__start__", "write"], ["write", "__end__"]]}})", "application/json");
  REQUIRE(run->status == 201);
  CHECK(wait_run(*ca, json_body(run)["id"].as_string())["status"].as_string() == "completed");
  Value limits;
  for (int i = 0; i < 500; ++i) {
    limits = json_body(cb->Get("/rate-limits"));
    if (limits.is_array() && limits.size() > 0) break;
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(limits.is_array());
  REQUIRE(limits.size() == 1);
  CHECK((*limits.at(0))["worker_id"].as_string() == "limited");
  CHECK((*limits.at(0))["remaining"].as_int() == 7);
  CHECK((*limits.at(0))["limit"].as_int() == 10);
}

namespace {

bool eventually(const std::function<bool()>& check, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return check();
}

std::string last_error_of(orch::server::App& app, const std::string& worker) {
  auto status = app.registry->get_worker(worker);
  return status.ok() ? status->last_error : "(no such worker)";
}

}  // namespace

TEST_CASE("two orch serve on one PostgreSQL: one probes the workers for both, and the other takes over when it stops", "[server][postgres][workers][singleton]") {
  orch::testing::PostgresCluster& pg = orch::testing::require_postgres();
  orch::testing::FakeWorker worker;
  orch::server::ServerConfig config;
  config.db = pg.uri();
  config.postgres.schema = "serve_two_health";
  config.health_check_interval_ms = 300;  // the lease: two intervals
  config.worker_failure_threshold = 1000;  // failed probes never open the circuit (open ones are not probed)
  config.workers = *orch::parse_json(std::string(R"([{"id": "probed", "url": ")") + worker.url() + R"("}])");
  auto a = std::make_unique<TestServer>(config);
  auto b = std::make_unique<TestServer>(config);
  REQUIRE(a->app().worker_health != nullptr);
  REQUIRE(b->app().worker_health != nullptr);
  auto rounds = [](TestServer& s) { return s.app().worker_health->rounds_probed(); };
  REQUIRE(eventually([&] { return rounds(*a) + rounds(*b) >= 4; }));
  // One of them holds the "worker_health" lease and probes; the other never does.
  const bool a_probes = rounds(*a) > 0;
  TestServer& holder = a_probes ? *a : *b;
  TestServer& other = a_probes ? *b : *a;
  CHECK(rounds(other) == 0);
  CHECK(rounds(holder) >= 4);
  CHECK_FALSE(worker.requests().empty());

  // The holder's findings reach the other: the worker goes unhealthy there
  // too (its circuit counts the failures), then healthy again.
  worker.set_health_status(500);
  CHECK(eventually([&] { return last_error_of(holder.app(), "probed").find("health check") != std::string::npos; }));
  CHECK(eventually([&] { return last_error_of(other.app(), "probed").find("health check: HTTP 500") != std::string::npos; }));
  CHECK(other.app().worker_health->rounds_applied() > 0);
  worker.set_health_status(200);
  CHECK(eventually([&] { return last_error_of(other.app(), "probed").empty(); }));
  CHECK(rounds(other) == 0);

  // The holder stops (its lease is not handed over): the other takes the
  // probes over once the lease has run out.
  if (a_probes) a.reset(); else b.reset();
  TestServer& survivor = a ? *a : *b;
  CHECK(eventually([&] { return survivor.app().worker_health->rounds_probed() >= 2; }));
}
