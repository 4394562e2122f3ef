// SPDX-License-Identifier: MIT
// The PostgreSQL store on a real server (support/postgres_cluster.h starts a
// private one per test program): the Store contract, persistence, several
// store instances on one database, migrations, failures (bad conninfo, the
// server stopped or frozen mid-use) and the checkpoint size budget.
// Without PostgreSQL's server binaries these tests fail: they do not skip.
#include "orch/postgres_store.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "support/store_samples.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "orch/testing/store_conformance.h"
#include "orch/workflow.h"
#include "support/figures.h"
#include "support/postgres_cluster.h"
#include "support/postgres_test_helpers.h"
#include "store/postgres/pg_change_watch.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/pg_schema.h"
#include "store/postgres/pg_store_impl.h"

using orch::Checkpoint;
using orch::EventRecord;
using orch::RunRecord;
using orch::RunStatus;
using orch::Status;
using orch::StatusCode;
using orch::Store;
using orch::Value;
using orch::testing::PostgresCluster;

namespace {

std::shared_ptr<Store> open_store(const std::string& schema, orch::PostgresStoreOptions options = {}) {
  options.schema = schema;
  auto store = orch::new_postgres_store(orch::testing::require_postgres().conninfo(), options);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

std::string describe(const std::vector<std::string>& failures) {
  std::string out;
  for (const std::string& f : failures) out += f + "\n";
  return out;
}

RunRecord make_run(const std::string& id) { return orch::testing::sample_running_run(id); }

Checkpoint make_checkpoint(const std::string& run_id, int64_t version, Value state) {
  return orch::testing::sample_checkpoint_of(run_id, version, std::move(state));
}

using orch::testing::grown_state;

void require_same_text(const Value& expected, const Value& actual) { REQUIRE(expected.to_json() == actual.to_json()); }

// The runs whose events a store's watch_changes announces, in order heard.
class HeardRuns {
 public:
  explicit HeardRuns(Store& store) {
    watch_ = store.watch_changes([this](const orch::StoreChange& change) {
      std::lock_guard<std::mutex> lock(mu_);
      if (change.kind == orch::StoreChange::Kind::kEvents) runs_.push_back(change.key);
      cv_.notify_all();
    });
    INFO(watch_.status().to_string());
    REQUIRE(watch_.ok());
  }
  // Waits up to 10 s until `count` announcements came; all heard so far.
  std::vector<std::string> wait_for(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    REQUIRE(cv_.wait_for(lock, std::chrono::seconds(10), [&] { return runs_.size() >= count; }));
    return runs_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> runs_;
  orch::Result<std::unique_ptr<orch::StoreWatch>> watch_ = orch::Status::internal("not watching yet");
};

// Runs `call` and says how long it took.
template <typename Call>
std::chrono::milliseconds timed(Call&& call) {
  auto started = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
}

}  // namespace

TEST_CASE("the PostgreSQL store passes the conformance suite", "[postgres][conformance]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  std::vector<std::string> failures =
      orch::testing::run_store_conformance([&]() -> std::shared_ptr<orch::Store> {
        orch::PostgresStoreOptions options;
        options.schema = orch::testing::fresh_schema("conformance");
        auto store = orch::new_postgres_store(pg.conninfo(), options);
        if (!store.ok()) FAIL(store.status().to_string());
        return *store;
      });
  INFO(describe(failures));
  CHECK(failures.empty());
}

TEST_CASE("the PostgreSQL store conforms with tiny delta chains and one connection", "[postgres][conformance]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  for (int chain : {0, 1, 2}) {
    orch::testing::StoreConformanceOptions suite;
    suite.threads = 3;
    suite.events_per_thread = 20;
    std::vector<std::string> failures = orch::testing::run_store_conformance(
        [&]() -> std::shared_ptr<orch::Store> {
          orch::PostgresStoreOptions options;
          options.schema = orch::testing::fresh_schema("chain" + std::to_string(chain));
          options.max_delta_chain = chain;
          options.max_connections = 1;
          auto store = orch::new_postgres_store(pg.conninfo(), options);
          if (!store.ok()) FAIL(store.status().to_string());
          return *store;
        },
        suite);
    INFO("max_delta_chain " << chain << "\n" << describe(failures));
    CHECK(failures.empty());
  }
}

TEST_CASE("a PostgreSQL store keeps everything across close and reopen", "[postgres]") {
  const std::string schema = orch::testing::fresh_schema("reopen");
  std::vector<Value> states;
  {
    auto store = open_store(schema);
    RunRecord run = make_run("kept");
    run.idempotency_key = "key-kept";
    run.host_data = Value::object({{"callbacks", Value::array({"http://x"})}});
    REQUIRE(store->create_run(run).ok());
    Value state = Value::object({{"items", Value::array()}, {"a", 1.0}, {"b", 1}});
    for (int v = 0; v < 5; ++v) {
      state = grown_state(state, v);
      states.push_back(state);
      run.state = state;
      run.checkpoint_count = v + 1;
      REQUIRE(store->commit_checkpoint(make_checkpoint("kept", v, state), run, v == 4).ok());
    }
    EventRecord event;
    event.run_id = "kept";
    event.kind = "run.started";
    event.data = Value::object({{"z", 1}, {"a", 2}});
    REQUIRE(store->append_event(event).value_or(0) == 1);
    orch::WorkflowRecord wf;
    wf.id = "wf";
    wf.name = "Workflow";
    wf.definition = Value::object({{"nodes", Value::object()}});
    REQUIRE(store->put_workflow(wf, true).ok());
    REQUIRE(store->put_host_record("workers", "w1", Value::object({{"url", "http://w1"}})).ok());
  }
  auto store = open_store(schema);
  auto run = store->get_run("kept");
  REQUIRE(run.ok());
  require_same_text(states.back(), run->state);
  CHECK(run->host_data["callbacks"].to_json() == R"(["http://x"])");
  CHECK(store->find_run_by_idempotency_key("key-kept").ok());
  auto cps = store->list_checkpoints("kept");
  REQUIRE(cps.ok());
  REQUIRE(cps->size() == states.size());
  for (size_t i = 0; i < states.size(); ++i) require_same_text(states[i], (*cps)[i].state);
  auto events = store->list_events("kept", 0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK(events->front().data.to_json() == R"({"z":1,"a":2})");
  CHECK(store->get_workflow("wf").ok());
  auto workers = store->list_host_records("workers");
  REQUIRE(workers.ok());
  CHECK(workers->size() == 1);
  // A reopened store continues the chain it did not write (no cached document).
  Value next = grown_state(states.back(), 5);
  run->state = next;
  REQUIRE(store->commit_checkpoint(make_checkpoint("kept", 5, next), *run, false).ok());
  auto latest = open_store(schema)->latest_checkpoint("kept");
  REQUIRE(latest.ok());
  require_same_text(next, latest->state);
}

TEST_CASE("two PostgreSQL stores on one database: concurrent writers, exact seqs, a stale cache", "[postgres][concurrency]") {
  const std::string schema = orch::testing::fresh_schema("shared");
  auto a = open_store(schema);
  auto b = open_store(schema);

  SECTION("both stores append to one run at once: no lost event, seqs 1..N") {
    REQUIRE(a->create_run(make_run("busy")).ok());
    constexpr int kThreads = 6;
    constexpr int kEach = 50;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        Store& store = t % 2 == 0 ? *a : *b;
        for (int i = 0; i < kEach; ++i) {
          // Half through write_batch (the engine's path), half alone.
          if (i % 2 == 0) {
            orch::StoreBatch batch;
            EventRecord e;
            e.run_id = "busy";
            e.kind = "batch";
            e.data = Value::object({{"t", t}, {"i", i}});
            batch.events.push_back(e);
            batch.events.push_back(e);
            if (!store.write_batch(batch).ok() || batch.events[1].seq != batch.events[0].seq + 1) ++failures;
          } else {
            EventRecord e;
            e.run_id = "busy";
            e.kind = "single";
            e.data = Value::object({{"t", t}, {"i", i}});
            if (!store.append_event(e).ok()) ++failures;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    auto events = b->list_events("busy", 0, 100000);
    REQUIRE(events.ok());
    const size_t expected = kThreads * (kEach / 2) * 3;
    REQUIRE(events->size() == expected);
    for (size_t i = 0; i < events->size(); ++i) CHECK((*events)[i].seq == static_cast<int64_t>(i + 1));
  }

  SECTION("runs written from both stores at once, read through the other") {
    constexpr int kThreads = 6;
    constexpr int kSteps = 30;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        Store& store = t % 2 == 0 ? *a : *b;
        RunRecord run = make_run("w" + std::to_string(t));
        if (!store.create_run(run).ok()) ++failures;
        Value state = Value::object({{"items", Value::array()}});
        for (int v = 0; v < kSteps; ++v) {
          state = grown_state(state, v);
          run.state = state;
          if (!store.commit_checkpoint(make_checkpoint(run.id, v, state), run, v % 10 == 0).ok()) ++failures;
          EventRecord event;
          event.run_id = run.id;
          event.kind = "values";
          if (store.append_event(event).value_or(-1) != v + 1) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    for (int t = 0; t < kThreads; ++t) {
      Store& reader = t % 2 == 0 ? *b : *a;
      auto cps = reader.list_checkpoints("w" + std::to_string(t));
      REQUIRE(cps.ok());
      REQUIRE(cps->size() == static_cast<size_t>(kSteps));
      CHECK(cps->back().state["items"].size() == static_cast<size_t>(kSteps));
    }
  }

  SECTION("a run continued by the other store is diffed against what is stored") {
    RunRecord run = make_run("handover");
    REQUIRE(a->create_run(run).ok());
    Value state = Value::object({{"items", Value::array()}});
    std::vector<Value> states;
    for (int v = 0; v < 9; ++v) {
      state = grown_state(state, v);
      states.push_back(state);
      // a, a, a, b, b, a, b, a, a: each store's cached document goes stale.
      Store& writer = (v == 3 || v == 4 || v == 6) ? *b : *a;
      run.state = state;
      REQUIRE(writer.commit_checkpoint(make_checkpoint("handover", v, state), run, false).ok());
    }
    for (Store* reader : {a.get(), b.get()}) {
      auto cps = reader->list_checkpoints("handover");
      REQUIRE(cps.ok());
      REQUIRE(cps->size() == states.size());
      for (size_t i = 0; i < states.size(); ++i) require_same_text(states[i], (*cps)[i].state);
    }
    // A truncate through b, then a (whose cache still holds cp8) continues.
    REQUIRE(b->truncate_checkpoints("handover", 4).ok());
    Value replay = grown_state(states[4], 100);
    run.state = replay;
    REQUIRE(a->commit_checkpoint(make_checkpoint("handover", 5, replay), run, false).ok());
    auto latest = b->latest_checkpoint("handover");
    REQUIRE(latest.ok());
    require_same_text(replay, latest->state);
    auto got = b->get_run("handover");
    REQUIRE(got.ok());
    require_same_text(replay, got->state);
  }

  SECTION("leases: another live owner is refused, an expired lease is taken over") {
    REQUIRE(a->create_claimed_run(make_run("leased"), "instance-a", 60000).ok());
    CHECK(b->claim_run("leased", "instance-b", 60000).code() == StatusCode::kAborted);
    CHECK(a->claim_run("leased", "instance-a", 60000).ok());
    REQUIRE(a->claim_run("leased", "instance-a", 1).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(b->claim_run("leased", "instance-b", 60000).ok());
    CHECK(a->claim_run("leased", "instance-a", 60000).code() == StatusCode::kAborted);
    CHECK(b->claim_run("missing", "instance-b", 60000).code() == StatusCode::kNotFound);
  }

  SECTION("idempotency keys and workflow ids are unique across stores") {
    RunRecord first = make_run("idem-a");
    first.idempotency_key = "shared-key";
    REQUIRE(a->create_run(first).ok());
    RunRecord second = make_run("idem-b");
    second.idempotency_key = "shared-key";
    Status dup = b->create_run(second);
    CHECK(dup.code() == StatusCode::kAlreadyExists);
    CHECK(dup.message() == "idem-a");
    orch::WorkflowRecord wf;
    wf.id = "wf-shared";
    wf.definition = Value::object();
    REQUIRE(a->put_workflow(wf, true).ok());
    CHECK(b->put_workflow(wf, true).code() == StatusCode::kAlreadyExists);
  }
}

TEST_CASE("many callers on one pooled PostgreSQL connection all get it in turn", "[postgres][concurrency]") {
  // A returned connection wakes one waiter (not all of them): with far more
  // callers than connections, none may be left waiting for a wake-up that
  // went to another, nor fail with "connections stayed busy".
  orch::PostgresStoreOptions options;
  options.max_connections = 1;
  auto store = open_store(orch::testing::fresh_schema("pool"), options);
  REQUIRE(store->create_run(make_run("queued")).ok());
  constexpr int kThreads = 24;
  constexpr int kEach = 15;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        EventRecord e;
        e.run_id = "queued";
        e.kind = "queued";
        e.data = Value::object({{"t", t}, {"i", i}});
        Status appended = store->append_event(e).status();
        if (!appended.ok() && errors[static_cast<size_t>(t)].empty()) errors[static_cast<size_t>(t)] = appended.to_string();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const std::string& e : errors) CHECK(e.empty());
  auto events = store->list_events("queued", 0, 100000);
  REQUIRE(events.ok());
  CHECK(events->size() == static_cast<size_t>(kThreads * kEach));
}

TEST_CASE("PostgreSQL migrations run once when several stores open at once, newer schemas are refused", "[postgres]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  const std::string schema = orch::testing::fresh_schema("migrate");
  constexpr int kStores = 6;
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  std::vector<std::string> errors(kStores);
  for (int i = 0; i < kStores; ++i) {
    threads.emplace_back([&, i] {
      orch::PostgresStoreOptions options;
      options.schema = schema;
      auto store = orch::new_postgres_store(pg.conninfo(), options);
      if (store.ok()) {
        ++opened;
      } else {
        errors[static_cast<size_t>(i)] = store.status().to_string();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const std::string& e : errors) INFO(e);
  CHECK(opened == kStores);
  auto rows = pg.psql("SELECT count(*), max(version) FROM \"" + schema + "\".orch_schema", "orch");
  REQUIRE(rows.ok());
  CHECK(*rows == "1|" + std::to_string(orch::postgres_store_schema_version()) + "\n");

  REQUIRE(pg.psql("UPDATE \"" + schema + "\".orch_schema SET version = 999", "orch").ok());
  orch::PostgresStoreOptions options;
  options.schema = schema;
  auto newer = orch::new_postgres_store(pg.conninfo(), options);
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.status().code() == StatusCode::kFailedPrecondition);
  CHECK(newer.status().message().find("newer than this orch understands") != std::string::npos);
}

TEST_CASE("a schema 3 PostgreSQL database is upgraded in place: its runs, leases and events stay and are fenced and announced as before", "[postgres][migration]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  const std::string schema = orch::testing::fresh_schema("from3");
  orch::testing::create_schema_at(pg, schema, 3);
  const std::string q = "\"" + schema + "\".";
  // A run leased by instance-a at epoch 3, with one event, as schema 3 stored them.
  REQUIRE(pg.psql("INSERT INTO " + q + "runs (id, status, workflow_id, workflow, input, config, state, host_data, "
                  "error, parent_run_id, parent_node, forked_from_run_id, forked_from_checkpoint_id, created_at_ms, "
                  "updated_at_ms, started_at_ms, ended_at_ms, input_tokens, output_tokens, checkpoint_count, "
                  "lease_owner, lease_expires_at_ms, lease_epoch, last_event_seq) VALUES ('old', 'running', 'wf', "
                  "'{}', '{}', '{}', '{}', '{}', '', '', '', '', '', 1, 1, 1, 0, 0, 0, 0, 'instance-a', "
                  "9000000000000, 3, 1); INSERT INTO " + q + "events (run_pk, run_id, seq, kind, data, "
                  "created_at_ms) SELECT pk, id, 1, 'run.started', '{}', 1 FROM " + q + "runs",
                  "orch")
              .ok());
  const std::string triggers = "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN "
                               "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '" + schema +
                               "' AND t.tgname = 'events_announce'";
  auto before = pg.psql(triggers, "orch");
  REQUIRE(before.ok());
  CHECK(*before == "1\n");

  auto writer = open_store(schema);
  auto reader = open_store(schema);
  auto version = pg.psql("SELECT version FROM " + q + "orch_schema", "orch");
  REQUIRE(version.ok());
  CHECK(*version == std::to_string(orch::postgres_store_schema_version()) + "\n");
  auto after = pg.psql(triggers, "orch");
  REQUIRE(after.ok());
  CHECK(*after == "0\n");  // the store announces events itself now

  HeardRuns heard(*reader);

  auto old_run = writer->get_run("old");
  INFO(old_run.status().to_string());
  REQUIRE(old_run.ok());
  // The holder of the lease writes a checkpoint with its events (one
  // statement since schema 4); seqs go on from the stored ones.
  orch::StoreBatch held;
  held.lease_owner = "instance-a";
  held.lease_epoch = 3;
  held.checkpoint = make_checkpoint("old", 1, Value::object({{"a", 1}}));
  held.run = *old_run;
  held.run->checkpoint_count = 1;
  held.run->state = held.checkpoint->state;
  for (const char* kind : {"checkpoint.created", "values"}) {
    EventRecord event;
    event.run_id = "old";
    event.kind = kind;
    held.events.push_back(event);
  }
  Status written = writer->write_batch(held);
  INFO(written.to_string());
  REQUIRE(written.ok());
  CHECK(held.events[0].seq == 2);
  CHECK(held.events[1].seq == 3);
  CHECK(heard.wait_for(1).front() == "old");
  // A writer at an older epoch is refused, and writes nothing.
  orch::StoreBatch stale;
  stale.lease_owner = "instance-a";
  stale.lease_epoch = 2;
  EventRecord late;
  late.run_id = "old";
  late.kind = "late";
  stale.events.push_back(late);
  Status refused = writer->write_batch(stale);
  CHECK(orch::lease_lost(refused));
  auto events = reader->list_events("old", 0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 3);
  CHECK((*events)[0].kind == "run.started");
  CHECK((*events)[2].kind == "values");
  auto latest = reader->latest_checkpoint("old");
  REQUIRE(latest.ok());
  CHECK(latest->state == Value::object({{"a", 1}}));
}

namespace {

// A superstep's batch of `run`: checkpoint `version` holding {"v": version},
// two events.
orch::StoreBatch checkpoint_batch(const RunRecord& run, int64_t version) {
  orch::StoreBatch batch;
  batch.checkpoint = make_checkpoint(run.id, version, Value::object({{"v", version}}));
  batch.run = run;
  batch.run->state = batch.checkpoint->state;
  batch.run->checkpoint_count = version;
  for (const char* kind : {"checkpoint.created", "values"}) {
    EventRecord event;
    event.run_id = run.id;
    event.kind = kind;
    batch.events.push_back(event);
  }
  return batch;
}

std::shared_ptr<orch::postgres::PostgresStore> open_grouping_store(const std::string& schema) {
  orch::PostgresStoreOptions options;
  options.schema = schema;
  auto store = orch::postgres::PostgresStore::open(orch::testing::require_postgres().conninfo(), options);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

}  // namespace

TEST_CASE("a PostgreSQL group commit: a run whose chain moved on is written the slow way, the others in one transaction", "[postgres][concurrency]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  const std::string schema = orch::testing::fresh_schema("group_chain");
  auto a = open_grouping_store(schema);
  auto b = open_store(schema);
  for (const char* id : {"moved", "kept", "ended"}) REQUIRE(a->create_run(make_run(id)).ok());
  // a remembers each run's checkpoint 1; b then writes checkpoint 2 of "moved".
  for (const char* id : {"moved", "kept", "ended"}) {
    orch::StoreBatch first = checkpoint_batch(make_run(id), 1);
    REQUIRE(a->write_batch(first).ok());
  }
  orch::StoreBatch elsewhere = checkpoint_batch(make_run("moved"), 2);
  REQUIRE(b->write_batch(elsewhere).ok());
  CHECK(elsewhere.events[0].seq == 3);
  // "ended" was deleted meanwhile: its member fails alone, NotFound. Its
  // rows went with it (schema 5 deletes them itself, no foreign keys).
  orch::PendingWrite pending;
  pending.run_id = "ended";
  pending.superstep = 2;
  pending.node_name = "n";
  REQUIRE(a->put_pending_write(pending).ok());
  orch::StepRecord ended_step;
  ended_step.id = "ended-step";
  ended_step.run_id = "ended";
  REQUIRE(a->put_step(ended_step).ok());
  REQUIRE(b->delete_run("ended").ok());
  CHECK(b->delete_run("ended").code() == StatusCode::kNotFound);
  auto left = pg.psql("SELECT (SELECT count(*) FROM \"" + schema + "\".events WHERE run_id = 'ended') + (SELECT count(*) FROM \"" +
                          schema + "\".steps WHERE run_id = 'ended') + (SELECT count(*) FROM \"" + schema +
                          "\".checkpoints WHERE run_id = 'ended') + (SELECT count(*) FROM \"" + schema +
                          "\".pending_writes WHERE run_id = 'ended')",
                      "orch");
  REQUIRE(left.ok());
  CHECK(*left == "0\n");

  orch::StoreBatch moved = checkpoint_batch(make_run("moved"), 3);
  orch::StoreBatch kept = checkpoint_batch(make_run("kept"), 2);
  // Steps ride in the run's statement: x started, y started, x completed.
  for (const char* id : {"x", "y", "x"}) {
    orch::StepRecord step;
    step.id = id;
    step.run_id = "kept";
    step.node_name = std::string("node \"") + id + "\"";
    step.status = kept.steps.empty() ? orch::StepStatus::kRunning : orch::StepStatus::kCompleted;
    step.attempt = 1;
    step.output = Value::object({{"text", "a \\ b {c} \"d\""}});
    kept.steps.push_back(step);
  }
  kept.steps[1].status = orch::StepStatus::kRunning;
  orch::StoreBatch ended = checkpoint_batch(make_run("ended"), 2);
  std::vector<Status> written = a->write_batches_as_group({&moved, &kept, &ended});
  REQUIRE(written.size() == 3);
  INFO(written[0].to_string() << " / " << written[1].to_string());
  CHECK(written[0].ok());
  CHECK(written[1].ok());
  CHECK(written[2].code() == StatusCode::kNotFound);
  CHECK(moved.events[0].seq == 5);
  CHECK(moved.events[1].seq == 6);
  CHECK(kept.events[0].seq == 3);
  // The chain of "moved" reads back whole through any store.
  auto checkpoints = b->list_checkpoints("moved");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == 3);
  CHECK((*checkpoints)[1].state == Value::object({{"v", 2}}));
  CHECK((*checkpoints)[2].state == Value::object({{"v", 3}}));
  auto latest = b->latest_checkpoint("kept");
  REQUIRE(latest.ok());
  CHECK(latest->state == Value::object({{"v", 2}}));
  auto steps = b->list_steps("kept");
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == 2);
  CHECK((*steps)[0].id == "y");
  CHECK((*steps)[0].status == orch::StepStatus::kRunning);
  CHECK((*steps)[1].id == "x");
  CHECK((*steps)[1].status == orch::StepStatus::kCompleted);
  CHECK((*steps)[1].node_name == "node \"x\"");
  CHECK((*steps)[1].attempt == 1);
  CHECK((*steps)[1].output == Value::object({{"text", "a \\ b {c} \"d\""}}));
  // The run rows name their latest checkpoints.
  auto named = pg.psql("SELECT id || '=' || latest_checkpoint_id FROM \"" + schema + "\".runs ORDER BY id", "orch");
  REQUIRE(named.ok());
  CHECK(*named == "kept=kept-cp2\nmoved=moved-cp3\n");
  // After a truncate too; the next group write follows the truncated chain.
  REQUIRE(b->truncate_checkpoints("moved", 1).ok());
  named = pg.psql("SELECT latest_checkpoint_id FROM \"" + schema + "\".runs WHERE id = 'moved'", "orch");
  REQUIRE(named.ok());
  CHECK(*named == "moved-cp1\n");
  orch::StoreBatch replayed = checkpoint_batch(make_run("moved"), 2);
  replayed.checkpoint->id = "moved-cp2b";
  std::vector<Status> again = a->write_batches_as_group({&replayed});
  REQUIRE(again.size() == 1);
  INFO(again[0].to_string());
  REQUIRE(again[0].ok());
  auto after = b->list_checkpoints("moved");
  REQUIRE(after.ok());
  REQUIRE(after->size() == 2);
  CHECK((*after)[1].id == "moved-cp2b");
  CHECK((*after)[1].state == Value::object({{"v", 2}}));
}

TEST_CASE("a PostgreSQL group commit with two batches of one run writes them in their order", "[postgres][concurrency]") {
  const std::string schema = orch::testing::fresh_schema("group_twice");
  auto a = open_grouping_store(schema);
  for (const char* id : {"twice", "other"}) {
    REQUIRE(a->create_run(make_run(id)).ok());
    orch::StoreBatch first = checkpoint_batch(make_run(id), 1);
    REQUIRE(a->write_batch(first).ok());
  }
  // The group's runs share one statement, which can write a run once: the
  // second batch of "twice" comes after the first, not in its place.
  orch::StoreBatch earlier = checkpoint_batch(make_run("twice"), 2);
  orch::StoreBatch other = checkpoint_batch(make_run("other"), 2);
  orch::StoreBatch later = checkpoint_batch(make_run("twice"), 3);
  std::vector<Status> written = a->write_batches_as_group({&earlier, &other, &later});
  REQUIRE(written.size() == 3);
  for (const Status& status : written) {
    INFO(status.to_string());
    CHECK(status.ok());
  }
  CHECK(earlier.events[0].seq == 3);
  CHECK(earlier.events[1].seq == 4);
  CHECK(later.events[0].seq == 5);
  CHECK(later.events[1].seq == 6);
  CHECK(other.events[0].seq == 3);
  auto checkpoints = a->list_checkpoints("twice");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == 3);
  CHECK((*checkpoints)[1].id == "twice-cp2");
  CHECK((*checkpoints)[2].id == "twice-cp3");
  CHECK((*checkpoints)[2].state == Value::object({{"v", 3}}));
  auto events = a->list_events("twice", 0, 100);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 6);
  CHECK((*events)[5].seq == 6);
}

TEST_CASE("a writer lane writes the first batch of each run as one group and the second batches as the next", "[postgres][concurrency]") {
  // Only a run's own batches are ordered: a queue of interleaved runs, each
  // with two batches (a run ending has two on PostgreSQL), is two group
  // transactions, not one per place where a run comes again.
  const std::string schema = orch::testing::fresh_schema("lane_layers");
  auto a = open_grouping_store(schema);
  const std::vector<std::string> ids = {"la", "lb", "lc", "ld"};
  for (const std::string& id : ids) {
    REQUIRE(a->create_run(make_run(id)).ok());
    orch::StoreBatch first = checkpoint_batch(make_run(id), 1);
    REQUIRE(a->write_batch(first).ok());
  }
  std::map<std::string, orch::StoreBatch> second, third;
  for (const std::string& id : ids) {
    second[id] = checkpoint_batch(make_run(id), 2);
    third[id] = checkpoint_batch(make_run(id), 3);
  }
  // Handed over as la2 lb2 la3 lc2 lb3 ld2 lc3 ld3.
  std::vector<orch::StoreBatch*> queue = {&second["la"], &second["lb"], &third["la"], &second["lc"],
                                          &third["lb"],  &second["ld"], &third["lc"], &third["ld"]};
  const size_t groups_before = a->groups_written();
  std::vector<Status> written = a->write_batches_as_lane(queue);
  REQUIRE(written.size() == queue.size());
  for (const Status& status : written) {
    INFO(status.to_string());
    CHECK(status.ok());
  }
  CHECK(a->groups_written() - groups_before == 2);
  for (const std::string& id : ids) {
    INFO(id);
    CHECK(second[id].events[0].seq == 3);
    CHECK(third[id].events[0].seq == 5);
    auto checkpoints = a->list_checkpoints(id);
    REQUIRE(checkpoints.ok());
    REQUIRE(checkpoints->size() == 3);
    CHECK((*checkpoints)[2].id == id + "-cp3");
    CHECK((*checkpoints)[2].state == Value::object({{"v", 3}}));
  }
}

TEST_CASE("a run's last superstep and its end are one PostgreSQL batch: one group for runs ending together, the slow way when the chain moved on", "[postgres][concurrency]") {
  const std::string schema = orch::testing::fresh_schema("earlier_cp");
  auto a = open_grouping_store(schema);
  auto b = open_store(schema);
  REQUIRE(a->accepts_earlier_checkpoint());
  const std::vector<std::string> ids = {"ea", "eb", "moved"};
  for (const std::string& id : ids) {
    REQUIRE(a->create_run(make_run(id)).ok());
    orch::StoreBatch first = checkpoint_batch(make_run(id), 1);
    REQUIRE(a->write_batch(first).ok());
  }
  // Another store moves "moved" on: a's delta for it follows the wrong checkpoint.
  orch::StoreBatch elsewhere = checkpoint_batch(make_run("moved"), 2);
  REQUIRE(b->write_batch(elsewhere).ok());
  // Each run's last superstep (earlier) and its end, with a growing state so
  // that the end is stored as a delta of the earlier one.
  auto ending = [](const std::string& id, int64_t version) {
    orch::StoreBatch batch = checkpoint_batch(make_run(id), version + 1);
    batch.earlier_checkpoint = make_checkpoint(id, version, Value::object({{"v", version}, {"text", std::string(400, 'x')}}));
    batch.checkpoint->state = Value::object({{"v", version + 1}, {"text", std::string(400, 'x')}});
    batch.checkpoint->parent_id = batch.earlier_checkpoint->id;
    batch.run->status = orch::RunStatus::kCompleted;
    batch.run->state = batch.checkpoint->state;
    return batch;
  };
  std::map<std::string, orch::StoreBatch> ends = {{"ea", ending("ea", 2)}, {"eb", ending("eb", 2)},
                                                  {"moved", ending("moved", 3)}};
  const size_t groups_before = a->groups_written();
  std::vector<Status> written = a->write_batches_as_lane({&ends["ea"], &ends["eb"], &ends["moved"]});
  for (const Status& status : written) {
    INFO(status.to_string());
    CHECK(status.ok());
  }
  CHECK(a->groups_written() - groups_before == 1);
  for (const std::string& id : ids) {
    INFO(id);
    const int64_t last = id == "moved" ? 4 : 3;
    // Through the other store (no cached documents): the whole chain, in order.
    auto checkpoints = b->list_checkpoints(id);
    REQUIRE(checkpoints.ok());
    REQUIRE(checkpoints->size() == static_cast<size_t>(last));
    CHECK((*checkpoints)[last - 2].id == id + "-cp" + std::to_string(last - 1));
    CHECK((*checkpoints)[last - 2].state["v"].as_int() == last - 1);
    CHECK((*checkpoints)[last - 1].id == id + "-cp" + std::to_string(last));
    CHECK((*checkpoints)[last - 1].state["v"].as_int() == last);
    auto run = b->get_run(id);
    REQUIRE(run.ok());
    CHECK(run->status == orch::RunStatus::kCompleted);
    CHECK(run->state["v"].as_int() == last);
    auto latest = b->latest_checkpoint(id);
    REQUIRE(latest.ok());
    CHECK(latest->id == id + "-cp" + std::to_string(last));
    CHECK(ends[id].events[0].seq == 3 + (id == "moved" ? 2 : 0));
  }
  // Written alone too (a new run's first batch is): both checkpoints, one transaction.
  orch::StoreBatch created = ending("alone", 1);
  created.create = orch::StoreBatch::NewRun{make_run("alone"), "owner-a", 60000};
  REQUIRE(a->write_batch(created).ok());
  auto alone = b->list_checkpoints("alone");
  REQUIRE(alone.ok());
  REQUIRE(alone->size() == 2);
  CHECK((*alone)[0].state["v"].as_int() == 1);
  CHECK((*alone)[1].state["v"].as_int() == 2);
}

TEST_CASE("many runs committing supersteps at once through the group commit: every batch written once, exact seqs and chains", "[postgres][concurrency]") {
  const std::string schema = orch::testing::fresh_schema("group_many");
  // Few connections, many threads: groups form, and several leaders write
  // at once.
  orch::PostgresStoreOptions options;
  options.max_connections = 4;
  options.group_commit_writers = 3;
  auto store = open_store(schema, options);
  constexpr int kThreads = 24;
  constexpr int kSteps = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      RunRecord run = make_run("many" + std::to_string(t));
      if (!store->create_run(run).ok()) ++failures;
      Value state = Value::object({{"items", Value::array()}});
      int64_t seq = 0;
      for (int v = 1; v <= kSteps; ++v) {
        state = grown_state(state, v);
        orch::StoreBatch batch = checkpoint_batch(run, v);
        batch.checkpoint->state = state;
        batch.run->state = state;
        batch.sync_to_disk = v % 7 == 0;
        orch::StepRecord step;
        step.id = run.id + "-s" + std::to_string(v);
        step.run_id = run.id;
        step.status = orch::StepStatus::kCompleted;
        batch.steps.push_back(step);
        if (!store->write_batch(batch).ok() || batch.events[0].seq != seq + 1 || batch.events[1].seq != seq + 2) {
          ++failures;
        }
        seq += 2;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  auto reader = open_store(schema);
  for (int t = 0; t < kThreads; ++t) {
    const std::string id = "many" + std::to_string(t);
    auto events = reader->list_events(id, 0, 1000);
    REQUIRE(events.ok());
    REQUIRE(events->size() == 2 * kSteps);
    for (size_t i = 0; i < events->size(); ++i) CHECK((*events)[i].seq == static_cast<int64_t>(i + 1));
    auto checkpoints = reader->list_checkpoints(id);
    REQUIRE(checkpoints.ok());
    REQUIRE(checkpoints->size() == kSteps);
    CHECK(checkpoints->back().state["step"] == Value(kSteps));
    auto steps = reader->list_steps(id);
    REQUIRE(steps.ok());
    CHECK(steps->size() == kSteps);
  }
}

TEST_CASE("a schema 4 PostgreSQL database is upgraded in place: each run row names its latest checkpoint, and writes go on from it", "[postgres][migration]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  // Rows written by this store, copied into a database at schema 4.
  const std::string source = orch::testing::fresh_schema("from4_source");
  {
    auto writer = open_store(source);
    REQUIRE(writer->create_run(make_run("old")).ok());
    REQUIRE(writer->create_run(make_run("bare")).ok());
    for (int64_t version = 1; version <= 2; ++version) {
      orch::StoreBatch batch = checkpoint_batch(make_run("old"), version);
      REQUIRE(writer->write_batch(batch).ok());
    }
  }
  const std::string schema = orch::testing::fresh_schema("from4");
  orch::testing::create_schema_at(pg, schema, 4);
  const std::string to = "\"" + schema + "\".", from = "\"" + source + "\".";
  auto columns = pg.psql("SELECT count(*) FROM information_schema.columns WHERE table_schema = '" + schema +
                             "' AND column_name = 'latest_checkpoint_id'",
                         "orch");
  REQUIRE(columns.ok());
  CHECK(*columns == "0\n");
  const std::string run_columns =
      "pk, id, status, workflow_id, workflow, input, config, state, host_data, error, parent_run_id, parent_node, "
      "idempotency_key, forked_from_run_id, forked_from_checkpoint_id, created_at_ms, updated_at_ms, started_at_ms, "
      "ended_at_ms, input_tokens, output_tokens, checkpoint_count, recoveries, lease_owner, lease_expires_at_ms, "
      "last_event_seq, lease_epoch";
  const std::string checkpoint_columns =
      "id, run_pk, run_id, seq, parent_id, step_id, version, created_at_ms, kind, base_seq, chain_bytes, base_bytes, "
      "body";
  REQUIRE(pg.psql("INSERT INTO " + to + "runs (" + run_columns + ") OVERRIDING SYSTEM VALUE SELECT " + run_columns +
                      " FROM " + from + "runs; INSERT INTO " + to + "checkpoints (" + checkpoint_columns +
                      ") SELECT " + checkpoint_columns + " FROM " + from + "checkpoints ORDER BY run_pk, seq",
                  "orch")
              .ok());

  auto store = open_grouping_store(schema);
  auto named = pg.psql("SELECT id || '=' || latest_checkpoint_id FROM " + to + "runs ORDER BY id", "orch");
  REQUIRE(named.ok());
  CHECK(*named == "bare=\nold=old-cp2\n");
  // A store that remembers nothing: its first write follows the stored chain
  // (refused by the group's check, then written the slow way), the next one
  // the remembered document.
  for (int64_t version = 3; version <= 4; ++version) {
    orch::StoreBatch batch = checkpoint_batch(make_run("old"), version);
    std::vector<Status> written = store->write_batches_as_group({&batch});
    INFO(written[0].to_string());
    REQUIRE(written[0].ok());
  }
  orch::StoreBatch bare = checkpoint_batch(make_run("bare"), 1);
  REQUIRE(store->write_batch(bare).ok());
  auto checkpoints = store->list_checkpoints("old");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == 4);
  CHECK((*checkpoints)[3].state == Value::object({{"v", 4}}));
  named = pg.psql("SELECT id || '=' || latest_checkpoint_id FROM " + to + "runs ORDER BY id", "orch");
  REQUIRE(named.ok());
  CHECK(*named == "bare=bare-cp1\nold=old-cp4\n");
}

TEST_CASE("a PostgreSQL pipeline without BEGIN is one transaction: a failure undoes what came before it, a local setting lasts to its end", "[postgres]") {
  const std::string schema = orch::testing::fresh_schema("pipeline");
  open_store(schema);  // creates the schema and its tables
  orch::postgres::ConnectSettings settings;
  settings.conninfo = orch::testing::require_postgres().conninfo();
  settings.schema = schema;
  settings.synchronous_commit = false;
  auto opened = orch::postgres::Connection::open(settings);
  REQUIRE(opened.ok());
  orch::postgres::Connection& conn = **opened;
  using orch::postgres::Command;
  using orch::postgres::Params;
  const std::string insert = "INSERT INTO host_records (collection, id, record) VALUES ('c', $1, '{}')";
  std::vector<Command> failing;
  failing.push_back({insert, Params().text("a")});
  failing.push_back({"SELECT 1 / $1::integer", Params().integer(0)});
  failing.push_back({insert, Params().text("b")});
  CHECK_FALSE(conn.pipeline("test", failing).ok());
  auto count = conn.exec("test", "SELECT count(*) FROM host_records");
  REQUIRE(count.ok());
  CHECK(count->string(0, 0) == "0");
  // The durability a sync_to_disk batch asks for holds up to the commit, not after.
  std::vector<Command> synced;
  synced.push_back({"SELECT set_config('synchronous_commit', 'on', true)", Params()});
  synced.push_back({insert, Params().text("a")});
  synced.push_back({"SELECT current_setting('synchronous_commit')", Params()});
  auto results = conn.pipeline("test", synced);
  REQUIRE(results.ok());
  CHECK((*results)[2].string(0, 0) == "on");
  auto after = conn.exec("test", "SELECT current_setting('synchronous_commit'), count(*) FROM host_records");
  REQUIRE(after.ok());
  CHECK(after->string(0, 0) == "off");
  CHECK(after->string(0, 1) == "1");
}

TEST_CASE("the default PostgreSQL pool is twice the machine's threads, 2 to 8 connections", "[postgres]") {
  const size_t threads = std::thread::hardware_concurrency();
  const size_t expected = threads == 0 ? 2 : std::min<size_t>(8, std::max<size_t>(2, 2 * threads));
  CHECK(orch::default_postgres_max_connections() == expected);
  CHECK(orch::PostgresStoreOptions().max_connections == expected);
}

TEST_CASE("bad PostgreSQL conninfo or no server: a clear Status, quickly", "[postgres][hardening]") {
  auto malformed = orch::new_postgres_store("host=/tmp port=notaport dbname");
  CHECK(malformed.status().code() == StatusCode::kInvalidArgument);
  auto bad_uri = orch::new_postgres_store("postgresql://[::1");
  CHECK(bad_uri.status().code() == StatusCode::kInvalidArgument);
  const std::string nowhere =
      (std::filesystem::temp_directory_path() / ("orch-no-server-" + std::to_string(::getpid()))).string();
  orch::Result<std::shared_ptr<Store>> refused = orch::Status::internal("not run");
  auto took = timed([&] { refused = orch::new_postgres_store("host=" + nowhere + " dbname=orch"); });
  CHECK(refused.status().code() == StatusCode::kUnavailable);
  CHECK(refused.status().message().find(nowhere) != std::string::npos);
  CHECK(took < std::chrono::seconds(5));
  // A database that does not exist: the server says so.
  auto missing = orch::new_postgres_store(orch::testing::require_postgres().conninfo("no_such_database"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("no_such_database") != std::string::npos);
  // Hostile values never reach the server cut short.
  auto store = open_store(orch::testing::fresh_schema("hostile"));
  RunRecord nul = make_run(std::string("with\0nul", 8));
  CHECK(store->create_run(nul).code() == StatusCode::kInvalidArgument);
  RunRecord huge = make_run("huge");
  huge.input = Value::object({{"blob", std::string(8 * 1024 * 1024, 'x')}});
  REQUIRE(store->create_run(huge).ok());
  CHECK(store->get_run("huge")->input["blob"].as_string().size() == 8u * 1024 * 1024);
}

TEST_CASE("damaged PostgreSQL rows give errors, not crashes", "[postgres][hardening]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  const std::string schema = orch::testing::fresh_schema("damaged");
  auto store = open_store(schema);
  RunRecord run = make_run("victim");
  REQUIRE(store->create_run(run).ok());
  for (int v = 0; v < 3; ++v) {
    Value state = Value::object({{"v", v}});
    run.state = state;
    REQUIRE(store->commit_checkpoint(make_checkpoint("victim", v, state), run, false).ok());
  }
  EventRecord e;
  e.run_id = "victim";
  e.kind = "x";
  REQUIRE(store->append_event(e).ok());
  const std::string q = "\"" + schema + "\".";
  REQUIRE(pg.psql("UPDATE " + q + "runs SET input = '{not json', status = 'weird' WHERE id = 'victim'", "orch").ok());
  REQUIRE(pg.psql("UPDATE " + q + "checkpoints SET body = '[1,' WHERE seq = 1", "orch").ok());
  REQUIRE(pg.psql("UPDATE " + q + "events SET data = 'nope'", "orch").ok());
  auto fresh = open_store(schema);  // no cached documents
  CHECK(fresh->get_run("victim").status().code() == StatusCode::kInternal);
  CHECK(fresh->list_checkpoints("victim").status().code() == StatusCode::kInternal);
  CHECK(fresh->get_checkpoint("victim-cp2").status().code() == StatusCode::kInternal);
  CHECK(fresh->list_events("victim", 0, 10).status().code() == StatusCode::kInternal);
  CHECK(fresh->get_checkpoint("victim-cp0").ok());  // a snapshot before the damage
}

TEST_CASE("the PostgreSQL server stopped or frozen mid-use: Unavailable, no hang, then it recovers", "[postgres][hardening]") {
  // A cluster of its own: stopping the shared one would disturb nothing here
  // (ctest runs each case alone), but this keeps the case self-contained.
  auto own = PostgresCluster::start();
  INFO(own.status().to_string());
  REQUIRE(own.ok());
  PostgresCluster& pg = **own;
  orch::PostgresStoreOptions options;
  options.statement_timeout_ms = 1000;
  options.lock_timeout_ms = 500;
  options.connect_timeout_s = 2;
  options.acquire_timeout_ms = 2000;
  auto opened = orch::new_postgres_store(pg.conninfo(), options);
  REQUIRE(opened.ok());
  std::shared_ptr<Store> store = *opened;
  REQUIRE(store->create_run(make_run("r")).ok());

  // Stopped: every call fails with Unavailable and a message naming the cause.
  REQUIRE(pg.stop().ok());
  Status stopped;
  auto took = timed([&] { stopped = store->update_run(make_run("r")); });
  CHECK(stopped.code() == StatusCode::kUnavailable);
  INFO(stopped.to_string());
  CHECK(took < std::chrono::seconds(5));
  auto again = store->get_run("r");
  CHECK(again.status().code() == StatusCode::kUnavailable);

  // Back: the pool reconnects.
  REQUIRE(pg.restart().ok());
  orch::Result<RunRecord> back = orch::Status::internal("not run");
  for (int i = 0; i < 3 && !back.ok(); ++i) back = store->get_run("r");
  CHECK(back.ok());

  // A row locked elsewhere: lock_timeout turns the wait into Unavailable.
  std::thread locker([&] {
    (void)pg.psql("BEGIN; SELECT 1 FROM runs WHERE id = 'r' FOR UPDATE; SELECT pg_sleep(3); COMMIT;", "orch");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  Status locked;
  took = timed([&] { locked = store->update_run(make_run("r")); });
  locker.join();
  CHECK(locked.code() == StatusCode::kUnavailable);
  CHECK(took < std::chrono::seconds(3));

  // Frozen (every server process stopped with SIGSTOP): the client's own
  // deadline (statement_timeout_ms + 1 s) ends the wait.
  REQUIRE(pg.freeze().ok());
  Status frozen;
  took = timed([&] { frozen = store->update_run(make_run("r")); });
  REQUIRE(pg.thaw().ok());
  CHECK(frozen.code() == StatusCode::kUnavailable);
  INFO(frozen.to_string());
  CHECK(took < std::chrono::seconds(6));
  back = orch::Status::internal("not run");
  for (int i = 0; i < 3 && !back.ok(); ++i) back = store->get_run("r");
  CHECK(back.ok());
}

TEST_CASE("1000 engine supersteps that each append to a list stay within 1 MB of checkpoints on PostgreSQL", "[postgres][size][engine]") {
  auto store = open_store(orch::testing::fresh_schema("budget"));
  constexpr int kNodes = 1000;
  std::string nodes, edges = R"(["__start__","n0"])";
  for (int i = 0; i < kNodes; ++i) {
    nodes += (i ? "," : "") + std::string("\"n") + std::to_string(i) + "\":{}";
    if (i > 0) edges += ",[\"n" + std::to_string(i - 1) + "\",\"n" + std::to_string(i) + "\"]";
  }
  edges += ",[\"n" + std::to_string(kNodes - 1) + "\",\"__end__\"]";
  auto parsed = orch::parse_workflow_json(
      R"({"state_schema":{"items":{"type":"array","reducer":"append"},"total":{"type":"number","reducer":"add"}},"nodes":{)" +
      nodes + "},\"edges\":[" + edges + "]}");
  REQUIRE(parsed.ok());
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  for (auto& node : wf->nodes) {
    Value update = Value::object({{"items", Value::array({node.name})}, {"total", 1}});
    node.function = [update](const orch::NodeCall&) -> orch::Result<orch::NodeOutput> { return orch::NodeOutput(update); };
  }
  wf->reindex();
  orch::EngineOptions options;
  options.store = store;
  options.threads = 2;
  options.default_recursion_limit = 5000;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  orch::RunOptions run;
  run.run_id = "chain";
  auto started = (*engine)->start_run(wf, run);
  REQUIRE(started.ok());
  auto done = (*engine)->wait("chain", std::chrono::seconds(120));
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["items"].size() == static_cast<size_t>(kNodes));
  auto bytes = orch::postgres_checkpoint_bytes(*store, "chain");
  REQUIRE(bytes.ok());
  orch::testing::report_figures("postgres checkpoint budget",
                                "chain of 1000: " + std::to_string(*bytes) + " bytes of checkpoints (budget 1048576)");
  CHECK(*bytes <= 1024 * 1024);
  CHECK_FALSE(orch::postgres_checkpoint_bytes(*orch::new_memory_store(), "chain").ok());
}

TEST_CASE("a values event written with its checkpoint is stored once and reads back whole, also after a truncate", "[postgres]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  const std::string schema = orch::testing::fresh_schema("values");
  auto store = open_store(schema);
  RunRecord run = make_run("v");
  REQUIRE(store->create_run(run).ok());
  Value state = Value::object({{"items", Value::array()}});
  std::vector<Value> states;
  for (int v = 0; v < 4; ++v) {
    state = grown_state(state, v);
    states.push_back(state);
    orch::StoreBatch batch;
    batch.checkpoint = make_checkpoint("v", v, state);
    run.state = state;
    batch.run = run;
    EventRecord values;
    values.run_id = "v";
    values.kind = "values";
    values.data = Value::object({{"step", v}, {"state", batch.checkpoint->state}});  // shares storage
    batch.events.push_back(values);
    REQUIRE(store->write_batch(batch).ok());
    CHECK(batch.events[0].seq == v + 1);
  }
  // Stored without the state: it names the checkpoint.
  auto refs = pg.psql("SELECT count(*) FROM \"" + schema + "\".events WHERE state_checkpoint_id <> '' AND "
                      "data NOT LIKE '%items%'", "orch");
  REQUIRE(refs.ok());
  CHECK(*refs == "4\n");
  auto check_events = [&](Store& reader) {
    auto events = reader.list_events("v", 0, 100);
    REQUIRE(events.ok());
    REQUIRE(events->size() == 4);
    for (size_t i = 0; i < 4; ++i) {
      CHECK((*events)[i].data["step"].as_int() == static_cast<int64_t>(i));
      require_same_text(states[i], (*events)[i].data["state"]);
    }
  };
  check_events(*store);
  check_events(*open_store(schema));  // without the cached document
  // Checkpoints 2 and 3 go; their events keep their states.
  REQUIRE(store->truncate_checkpoints("v", 1).ok());
  check_events(*open_store(schema));
}

TEST_CASE("watch_changes: a store hears the events and host records another store writes on its schema, and only those", "[postgres][events]") {
  const std::string schema = orch::testing::fresh_schema("watch");
  auto writer = open_store(schema);   // another instance, with its own connections
  auto reader = open_store(schema);
  auto elsewhere = open_store(orch::testing::fresh_schema("watch_other"));
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> heard;
  std::vector<std::string> collections;
  auto watch = reader->watch_changes([&](const orch::StoreChange& change) {
    std::lock_guard<std::mutex> lock(mu);
    if (change.kind == orch::StoreChange::Kind::kEvents) heard.push_back(change.key);
    if (change.kind == orch::StoreChange::Kind::kHostRecords) collections.push_back(change.key);
    cv.notify_all();
  });
  INFO(watch.status().to_string());
  REQUIRE(watch.ok());
  // An append on another schema of the same database is not this store's.
  REQUIRE(elsewhere->create_run(make_run("other")).ok());
  EventRecord noise;
  noise.run_id = "other";
  noise.kind = "noise";
  REQUIRE(elsewhere->append_event(noise).ok());
  REQUIRE(writer->create_run(make_run("followed")).ok());
  EventRecord e;
  e.run_id = "followed";
  e.kind = "run.started";
  REQUIRE(writer->append_event(e).ok());
  // A batch of several events: announced (once or more), at commit.
  orch::StoreBatch batch;
  for (int i = 0; i < 3; ++i) {
    EventRecord ev;
    ev.run_id = "followed";
    ev.kind = "k" + std::to_string(i);
    batch.events.push_back(ev);
  }
  REQUIRE(writer->write_batch(batch).ok());
  // Host records: a put and a delete of the "workers" collection are heard.
  REQUIRE(elsewhere->put_host_record("workers", "other", Value::object({{"id", "other"}})).ok());
  REQUIRE(writer->put_host_record("workers", "w1", Value::object({{"id", "w1"}})).ok());
  REQUIRE(writer->delete_host_record("workers", "w1").ok());
  std::unique_lock<std::mutex> lock(mu);
  REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return heard.size() >= 2 && collections.size() >= 2; }));
  for (const std::string& id : heard) CHECK(id == "followed");
  for (const std::string& c : collections) CHECK(c == "workers");
  lock.unlock();
  // Destroying the watch stops its thread: no call after it.
  watch->reset();
  const size_t count = heard.size();
  REQUIRE(writer->append_event(e).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(heard.size() == count);
}

TEST_CASE("a change payload names one run, one collection, or a group commit's runs, each whatever its bytes", "[postgres][events]") {
  using orch::postgres::parse_change_payload;
  auto keys = [](const std::vector<orch::StoreChange>& changes) {
    std::vector<std::string> out;
    for (const orch::StoreChange& change : changes) {
      out.push_back((change.kind == orch::StoreChange::Kind::kEvents ? "e:" : "h:") + change.key);
    }
    return out;
  };
  CHECK(keys(parse_change_payload("s e run 1", "s ")) == std::vector<std::string>{"e:run 1"});
  CHECK(keys(parse_change_payload("s h workers", "s ")) == std::vector<std::string>{"h:workers"});
  CHECK(keys(parse_change_payload("s E 1:a4:b :c12:1234567890121:x", "s ")) ==
        std::vector<std::string>{"e:a", "e:b :c", "e:123456789012", "e:x"});
  CHECK(parse_change_payload("other E 1:a", "s ").empty());
  CHECK(parse_change_payload("s x 1:a", "s ").empty());
  // A malformed list keeps the runs before the fault.
  CHECK(keys(parse_change_payload("s E 1:a9:bc", "s ")) == std::vector<std::string>{"e:a"});
  CHECK(keys(parse_change_payload("s E 1:ab", "s ")) == std::vector<std::string>{"e:a"});
  CHECK(parse_change_payload("s E :a", "s ").empty());
}

TEST_CASE("watch_changes: the runs of a group commit are heard, each of them, through one notification", "[postgres][events]") {
  const std::string schema = orch::testing::fresh_schema("watch_group");
  auto writer = open_grouping_store(schema);
  auto reader = open_store(schema);
  HeardRuns heard(*reader);
  // Ids a separator could not hold, and enough of them for several payloads.
  std::vector<std::string> ids = {"with space", "with:colon", "7:x", std::string(3000, 'l')};
  for (int i = 0; i < 5; ++i) ids.push_back(std::string(1000, 'a' + i));
  std::vector<orch::StoreBatch> batches;
  for (const std::string& id : ids) {
    REQUIRE(writer->create_run(make_run(id)).ok());
    batches.push_back(checkpoint_batch(make_run(id), 1));
  }
  std::vector<orch::StoreBatch*> group;
  for (orch::StoreBatch& batch : batches) group.push_back(&batch);
  for (const Status& status : writer->write_batches_as_group(group)) {
    INFO(status.to_string());
    REQUIRE(status.ok());
  }
  std::vector<std::string> runs = heard.wait_for(ids.size());
  std::vector<std::string> expected = ids;
  std::sort(expected.begin(), expected.end());
  std::sort(runs.begin(), runs.end());
  CHECK(runs == expected);
}

TEST_CASE("watch_changes survives the PostgreSQL server restarting", "[postgres][events][hardening]") {
  auto own = PostgresCluster::start();
  INFO(own.status().to_string());
  REQUIRE(own.ok());
  PostgresCluster& pg = **own;
  auto opened = orch::new_postgres_store(pg.conninfo(), {});
  REQUIRE(opened.ok());
  std::shared_ptr<Store> store = *opened;
  std::atomic<int> heard{0};
  auto watch = store->watch_changes([&](const orch::StoreChange&) { heard++; });
  REQUIRE(watch.ok());
  REQUIRE(store->create_run(make_run("r")).ok());
  REQUIRE(pg.stop().ok());
  REQUIRE(pg.restart().ok());
  EventRecord e;
  e.run_id = "r";
  e.kind = "after.restart";
  // The watch reconnects on its own (within its back-off): appends made after
  // that are heard again.
  for (int i = 0; i < 200 && heard == 0; ++i) {
    (void)store->append_event(e);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(heard > 0);
}
