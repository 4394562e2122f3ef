// SPDX-License-Identifier: MIT
// Leases with fencing on a real PostgreSQL (issue #21): two engines, each
// with its own store, on one database. The stale owner's writes are refused
// by the database in the batch's first statement, and it drops the run.
#include <atomic>
#include <string>

#include "catch.h"
#include "orch/postgres_store.h"
#include "orch/store.h"
#include "support/fencing_scenario.h"
#include "support/postgres_cluster.h"

using orch::RunStatus;
using orch::Store;

namespace {

std::shared_ptr<Store> open_store(const std::string& schema) {
  auto shared = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << shared.status().to_string());
  REQUIRE(shared.ok());
  orch::PostgresStoreOptions options;
  options.schema = schema;
  auto store = orch::new_postgres_store((*shared)->conninfo(), options);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

}  // namespace

TEST_CASE("two engines on one PostgreSQL database: the stale owner is fenced out and drops the run", "[postgres][lease]") {
  auto store_a = open_store("fencing_engines");
  auto store_b = open_store("fencing_engines");
  orch::testing::FencingOutcome o = orch::testing::run_fencing_scenario(store_a, store_b);
  REQUIRE(o.started);
  CHECK(o.taken_over == 1);
  CHECK(o.final_status == RunStatus::kCompleted);
  CHECK(o.refused_writes_a >= 1);
  CHECK(o.accepted_writes_a_after_takeover == 0);
  CHECK(o.a_dropped_run);
  CHECK(o.slow_on_a == 1);
  CHECK(o.slow_on_b == 1);
  CHECK(o.after_on_a == 0);
  CHECK(o.after_on_b == 1);
  CHECK(o.completed_events == 1);
  CHECK(o.slow_results == 1);
}

TEST_CASE("a singleton lease on PostgreSQL is held by one store at a time until it expires", "[postgres][lease]") {
  auto a = open_store("fencing_singletons");
  auto b = open_store("fencing_singletons");
  auto held = a->claim_singleton("retention", "instance-a", 600000);
  REQUIRE(held.ok());
  CHECK(*held);
  auto refused = b->claim_singleton("retention", "instance-b", 600000);
  REQUIRE(refused.ok());
  CHECK_FALSE(*refused);
  auto renewed = a->claim_singleton("retention", "instance-a", 0);  // renewed, for 0 ms: it runs out now
  REQUIRE(renewed.ok());
  CHECK(*renewed);
  auto taken = b->claim_singleton("retention", "instance-b", 600000);
  REQUIRE(taken.ok());
  CHECK(*taken);
  auto lost = a->claim_singleton("retention", "instance-a", 600000);
  REQUIRE(lost.ok());
  CHECK_FALSE(*lost);
}

TEST_CASE("PostgreSQL leases: renewal keeps a run, expiry lets another store claim it with the next epoch", "[postgres][lease]") {
  auto a = open_store("fencing_leases");
  auto b = open_store("fencing_leases");
  orch::RunRecord run;
  run.id = "leased-run";
  run.status = RunStatus::kRunning;
  REQUIRE(a->create_claimed_run(run, "instance-a", 0).ok());
  // Expired: listed, until renewed.
  auto expired = b->list_expired_leases(10);
  REQUIRE(expired.ok());
  CHECK(expired->size() == 1);
  auto renewed = a->renew_leases("instance-a", 600000);
  REQUIRE(renewed.ok());
  CHECK(*renewed == 1);
  expired = b->list_expired_leases(10);
  REQUIRE(expired.ok());
  CHECK(expired->empty());
  CHECK(b->claim_run_lease("leased-run", "instance-b", 600000).status().code() == orch::StatusCode::kAborted);
  REQUIRE(a->claim_run_lease("leased-run", "instance-a", 0).ok());
  auto epoch = b->claim_run_lease("leased-run", "instance-b", 600000);
  REQUIRE(epoch.ok());
  CHECK(*epoch == 2);
  // A renewal by the old owner does not touch a run it lost.
  auto stale_renewal = a->renew_leases("instance-a", 600000);
  REQUIRE(stale_renewal.ok());
  CHECK(*stale_renewal == 0);
  orch::StoreBatch stale;
  orch::EventRecord event;
  event.run_id = "leased-run";
  event.kind = "values";
  stale.events.push_back(event);
  stale.lease_owner = "instance-a";
  stale.lease_epoch = 1;
  orch::Status refused = a->write_batch(stale);
  CHECK(orch::lease_lost(refused));
  CHECK(refused.message().find("instance-b") != std::string::npos);
  auto events = b->list_events("leased-run", 0, 10);
  REQUIRE(events.ok());
  CHECK(events->empty());
}
