// SPDX-License-Identifier: MIT
// orch serve's side of leases (issue #21): engine.lease_ttl_ms in the config
// file, a unique owner id per process, and the lease keeper taking over runs
// whose lease ran out.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "app.h"
#include "catch.h"
#include "config.h"
#include "lease_keeper.h"
#include "retention.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "support/engine_fixture.h"

namespace {

orch::Status load(const std::string& text, orch::server::ServerConfig* config) {
  auto dir = std::filesystem::temp_directory_path() / ("orch-lease-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "config.json").string();
  std::ofstream(path) << text;
  orch::Status s = orch::server::load_config_file(path, config);
  std::filesystem::remove_all(dir);
  return s;
}

}  // namespace

TEST_CASE("engine.lease_ttl_ms is read from the config file and validated", "[server][config][lease]") {
  orch::server::ServerConfig config;
  CHECK(config.lease_ttl_ms == 30000);
  REQUIRE(load(R"({"engine": {"lease_ttl_ms": 5000}})", &config).ok());
  CHECK(config.lease_ttl_ms == 5000);
  orch::server::ServerConfig bad;
  orch::Status s = load(R"({"engine": {"lease_ttl_ms": 10}})", &bad);
  CHECK(s.code() == orch::StatusCode::kInvalidArgument);
  CHECK(s.message().find("engine.lease_ttl_ms") != std::string::npos);
  CHECK(load(R"({"engine": {"lease_ttl_ms": "30s"}})", &bad).code() == orch::StatusCode::kInvalidArgument);
  CHECK(load(R"({"engine": {"lease_ttl_ms": 999999999999}})", &bad).code() == orch::StatusCode::kInvalidArgument);
  // An unknown key still stops start-up.
  s = load(R"({"engine": {"lease_ttl": 5000}})", &bad);
  CHECK(s.code() == orch::StatusCode::kInvalidArgument);
  CHECK(s.message().find("unknown config key 'engine.lease_ttl'") != std::string::npos);
}

TEST_CASE("engine.max_send_items is read from the config file and must not be negative", "[server][config]") {
  orch::server::ServerConfig config;
  CHECK(config.max_send_items == 10000);
  REQUIRE(load(R"({"engine": {"max_send_items": 3}})", &config).ok());
  CHECK(config.max_send_items == 3);
  orch::server::ServerConfig bad;
  orch::Status s = load(R"({"engine": {"max_send_items": -1}})", &bad);
  CHECK(s.code() == orch::StatusCode::kInvalidArgument);
  CHECK(s.message().find("engine.max_send_items") != std::string::npos);
  CHECK(load(R"({"engine": {"max_send_items": "many"}})", &bad).code() == orch::StatusCode::kInvalidArgument);
}

TEST_CASE("every orch serve instance gets its own owner id", "[server][lease]") {
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.insert(orch::server::new_instance_owner_id());
  CHECK(ids.size() == 20u);
  const std::string id = *ids.begin();
  CHECK(id.rfind("orch-serve:", 0) == 0);
  CHECK(id.find(":" + std::to_string(::getpid()) + ":") != std::string::npos);

  orch::server::ServerConfig config;
  config.db = ":memory:";
  auto a = orch::server::open_app(config, nullptr);
  auto b = orch::server::open_app(config, nullptr);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK((*a)->owner_id != (*b)->owner_id);
}

TEST_CASE("the lease keeper renews this instance's leases and takes over expired runs", "[server][lease]") {
  auto store = orch::new_memory_store();
  auto wf = orch::testing::make_workflow(R"({"id": "w", "nodes": {"a": {"type": "interrupt"}},
    "edges": [["__start__","a"],["a","__end__"]]})");
  orch::RunRecord mine;
  mine.id = "mine";
  mine.status = orch::RunStatus::kInterrupted;
  mine.workflow = wf->definition;
  REQUIRE(store->create_claimed_run(mine, "keeper", 0).ok());
  orch::RunRecord orphan;
  orphan.id = "orphan";
  orphan.status = orch::RunStatus::kRunning;
  orphan.workflow = wf->definition;
  REQUIRE(store->create_claimed_run(orphan, "dead-instance", 0).ok());

  orch::EngineOptions options;
  options.store = store;
  options.owner_id = "keeper";
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  // A long period: the test drives the rounds itself (tick()).
  orch::server::LeaseKeeper keeper(*store, **engine, "keeper", 3600 * 1000);
  CHECK(keeper.tick() == 1);  // the orphan
  auto orphan_done = (*engine)->wait("orphan", std::chrono::seconds(10));
  REQUIRE(orphan_done.ok());
  CHECK(orphan_done->status == orch::RunStatus::kInterrupted);  // it ran, up to its interrupt node
  // Renewed: another owner cannot claim this instance's runs now.
  CHECK(store->claim_run("mine", "other", 1000).code() == orch::StatusCode::kAborted);
  CHECK(store->claim_run("orphan", "other", 1000).code() == orch::StatusCode::kAborted);
  CHECK(keeper.tick() == 0);
}

TEST_CASE("the retention sweep runs in the instance holding the retention lease only", "[server][lease]") {
  orch::server::ServerConfig config;
  config.db = ":memory:";
  config.retention_ms = 3600 * 1000;  // the sweeper's own timer stays out of the way
  auto app = orch::server::open_app(config, nullptr);
  REQUIRE(app.ok());
  orch::Store& store = *(*app)->store;
  orch::RunRecord old;
  old.id = "old";
  old.status = orch::RunStatus::kCompleted;
  old.created_at_ms = old.updated_at_ms = old.ended_at_ms = 1;
  REQUIRE(store.create_run(old).ok());
  // Another instance sweeps: this one leaves the run alone.
  auto other = store.claim_singleton("retention", "other-instance", 600000);
  REQUIRE(other.ok());
  REQUIRE(*other);
  CHECK((*app)->retention->sweep() == 0);
  CHECK(store.get_run("old").ok());
  // That instance is gone (its lease ran out): this one takes over the sweep.
  REQUIRE(store.claim_singleton("retention", "other-instance", 0).ok());
  CHECK((*app)->retention->sweep() == 1);
  CHECK(store.get_run("old").status().code() == orch::StatusCode::kNotFound);
}
