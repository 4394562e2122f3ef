// SPDX-License-Identifier: MIT
// Leases with fencing on a real PostgreSQL (issue #21): two engines, each
// with its own store, on one database. The stale owner's writes are refused
// by the database in the batch's first statement, and it drops the run.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/postgres_store.h"
#include "orch/store.h"
#include "store/postgres/pg_store_impl.h"
#include "support/fencing_scenario.h"
#include "support/postgres_cluster.h"
#include "support/store_samples.h"

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

// A superstep's batch of `run_id` by `owner` at `epoch`: checkpoint
// `version`, its two events and a step.
orch::StoreBatch superstep(const orch::RunRecord& run, int64_t version, const std::string& owner, int64_t epoch) {
  orch::StoreBatch batch;
  batch.lease_owner = owner;
  batch.lease_epoch = epoch;
  batch.checkpoint = orch::testing::sample_checkpoint_of(run.id, version, orch::Value::object({{"v", version}}));
  batch.run = run;
  batch.run->state = batch.checkpoint->state;
  batch.run->checkpoint_count = version;
  for (const char* kind : {"checkpoint.created", "values"}) {
    orch::EventRecord event;
    event.run_id = run.id;
    event.kind = kind;
    batch.events.push_back(event);
  }
  orch::StepRecord step;
  step.id = run.id + "-step" + std::to_string(version);
  step.run_id = run.id;
  step.node_name = "n";
  step.status = orch::StepStatus::kCompleted;
  batch.steps.push_back(step);
  return batch;
}

// Three running runs "<prefix>1..3" that `a` holds as "instance-a"; the
// second one's lease runs out at once and `b` takes it over (epoch 2).
std::vector<orch::RunRecord> runs_with_second_taken_over(Store& a, Store& b, const std::string& prefix) {
  std::vector<orch::RunRecord> runs;
  for (int i = 1; i <= 3; ++i) {
    orch::RunRecord run = orch::testing::sample_running_run(prefix + std::to_string(i));
    REQUIRE(a.create_claimed_run(run, "instance-a", i == 2 ? 0 : 600000).ok());
    runs.push_back(run);
  }
  auto taken = b.claim_run_lease(prefix + "2", "instance-b", 600000);
  REQUIRE(taken.ok());
  CHECK(*taken == 2);
  return runs;
}

}  // namespace

TEST_CASE("a PostgreSQL group commit refuses a fenced-off run alone: the other runs of its transaction commit", "[postgres][lease]") {
  auto shared = orch::testing::shared_postgres_cluster();
  REQUIRE(shared.ok());
  const std::string schema = "fencing_group";
  orch::PostgresStoreOptions options;
  options.schema = schema;
  auto grouped = orch::postgres::PostgresStore::open((*shared)->conninfo(), options);
  INFO(grouped.status().to_string());
  REQUIRE(grouped.ok());
  std::shared_ptr<orch::postgres::PostgresStore> a = *grouped;
  auto b = open_store(schema);
  std::vector<orch::RunRecord> runs = runs_with_second_taken_over(*a, *b, "g");

  std::vector<orch::StoreBatch> batches;
  for (const orch::RunRecord& run : runs) batches.push_back(superstep(run, 1, "instance-a", 1));
  std::vector<orch::Status> written = a->write_batches_as_group({&batches[0], &batches[1], &batches[2]});
  REQUIRE(written.size() == 3);
  INFO(written[0].to_string() << " / " << written[2].to_string());
  CHECK(written[0].ok());
  CHECK(orch::lease_lost(written[1]));
  CHECK(written[2].ok());
  CHECK(batches[0].events[1].seq == 2);
  CHECK(batches[2].events[1].seq == 2);

  // The stale owner wrote nothing of g2; g1 and g3 are whole.
  auto none = b->list_events("g2", 0, 10);
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(b->latest_checkpoint("g2").status().code() == orch::StatusCode::kNotFound);
  CHECK(b->list_steps("g2")->empty());
  for (const char* id : {"g1", "g3"}) {
    auto events = b->list_events(id, 0, 10);
    REQUIRE(events.ok());
    CHECK(events->size() == 2);
    auto latest = b->latest_checkpoint(id);
    REQUIRE(latest.ok());
    CHECK(latest->state == orch::Value::object({{"v", 1}}));
    CHECK(b->list_steps(id)->size() == 1);
  }
  // One transaction: the rows it inserted carry its id (xmin).
  auto transactions = (*shared)->psql("SELECT count(DISTINCT xmin::text) FROM \"" + schema + "\".checkpoints", "orch");
  REQUIRE(transactions.ok());
  CHECK(*transactions == "1\n");

  // The new owner goes on from what is stored.
  orch::StoreBatch next = superstep(runs[1], 1, "instance-b", 2);
  REQUIRE(b->write_batch(next).ok());
  CHECK(next.events[0].seq == 1);
}

TEST_CASE("PostgreSQL write_batch_async: a fenced-off run's batches are called back lease lost, in order, and nothing of them is written", "[postgres][lease]") {
  auto shared = orch::testing::shared_postgres_cluster();
  REQUIRE(shared.ok());
  const std::string schema = "fencing_async";
  auto a = open_store(schema);
  auto b = open_store(schema);
  std::vector<orch::RunRecord> runs = runs_with_second_taken_over(*a, *b, "h");

  std::mutex mu;
  std::condition_variable changed;
  std::vector<std::pair<std::string, orch::Status>> called;  // in callback order
  // Called back by the store's writer thread: the caller did not wait.
  const std::thread::id caller = std::this_thread::get_id();
  bool inline_callback = false;
  auto record = [&](const std::string& name) {
    return [&, name](orch::Status status, orch::StoreBatch&) {
      std::lock_guard<std::mutex> lock(mu);
      if (std::this_thread::get_id() == caller) inline_callback = true;
      called.emplace_back(name, std::move(status));
      changed.notify_all();
    };
  };
  for (const orch::RunRecord& run : runs) a->write_batch_async(superstep(run, 1, "instance-a", 1), record(run.id));
  // A batch that joins no checkpoint's statement (a step record), fenced too.
  orch::StoreBatch steps_only;
  steps_only.lease_owner = "instance-a";
  steps_only.lease_epoch = 1;
  orch::StepRecord step;
  step.id = "h2-late";
  step.run_id = "h2";
  step.node_name = "n";
  steps_only.steps.push_back(step);
  a->write_batch_async(std::move(steps_only), record("h2-steps"));
  // A run's write_batch returns after the callbacks of its batches handed over before it.
  orch::StoreBatch next = superstep(runs[0], 2, "instance-a", 1);
  REQUIRE(a->write_batch(next).ok());
  auto position = [&](const std::string& name) -> size_t {
    for (size_t i = 0; i < called.size(); ++i) {
      if (called[i].first == name) return i;
    }
    return SIZE_MAX;
  };
  std::unique_lock<std::mutex> lock(mu);
  CHECK(position("h1") != SIZE_MAX);
  REQUIRE(changed.wait_for(lock, std::chrono::seconds(60), [&] { return called.size() == 4; }));
  CHECK(called[position("h1")].second.ok());
  CHECK(called[position("h3")].second.ok());
  INFO(called[position("h2")].second.to_string());
  CHECK(orch::lease_lost(called[position("h2")].second));
  CHECK(orch::lease_lost(called[position("h2-steps")].second));
  CHECK(position("h2") < position("h2-steps"));
  CHECK_FALSE(inline_callback);
  lock.unlock();
  CHECK(next.events[0].seq == 3);

  // The stale owner wrote nothing of h2.
  auto none = b->list_events("h2", 0, 10);
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(b->latest_checkpoint("h2").status().code() == orch::StatusCode::kNotFound);
  CHECK(b->list_steps("h2")->empty());
  auto h3 = b->list_events("h3", 0, 10);
  REQUIRE(h3.ok());
  CHECK(h3->size() == 2);
  auto latest = b->latest_checkpoint("h1");
  REQUIRE(latest.ok());
  CHECK(latest->state == orch::Value::object({{"v", 2}}));
}

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
