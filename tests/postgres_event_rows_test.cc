// SPDX-License-Identifier: MIT
// The PostgreSQL store's events rows (schema 7, store/postgres/pg_event_rows.h):
// a write's events are one row, which reads back exactly from any seq and
// with any limit, through every path that writes events; damaged rows are
// errors; rows of schema 6 (one event each) read on after the migration.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "orch/postgres_store.h"
#include "orch/store.h"
#include "store/checkpoint_codec.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/pg_schema.h"
#include "store/postgres/pg_store_impl.h"
#include "support/postgres_cluster.h"
#include "support/postgres_test_helpers.h"
#include "support/store_samples.h"

using orch::Checkpoint;
using orch::EventRecord;
using orch::RunRecord;
using orch::Status;
using orch::StatusCode;
using orch::Store;
using orch::Value;
using orch::testing::PostgresCluster;

namespace {

std::shared_ptr<orch::postgres::PostgresStore> open_store(const std::string& schema) {
  orch::PostgresStoreOptions options;
  options.schema = schema;
  auto store = orch::postgres::PostgresStore::open(orch::testing::require_postgres().conninfo(), options);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

std::string psql(const std::string& sql) {
  auto out = orch::testing::require_postgres().psql(sql, "orch");
  INFO(sql);
  INFO(out.status().to_string());
  REQUIRE(out.ok());
  return *out;
}

EventRecord event(const std::string& run_id, const std::string& kind, Value data, int64_t created_at_ms) {
  EventRecord e;
  e.run_id = run_id;
  e.kind = kind;
  e.data = std::move(data);
  e.created_at_ms = created_at_ms;
  return e;
}

// Events whose kinds, data and times a careless encoding would garble.
std::vector<EventRecord> awkward_events(const std::string& run_id, int count) {
  std::vector<EventRecord> out;
  for (int i = 0; i < count; ++i) {
    Value data;
    switch (i % 6) {
      case 0: data = Value(); break;
      case 1: data = Value::object({{"text", "quote \" backslash \\ newline \n tab \t é 😀"}, {"n", i}}); break;
      case 2: data = Value::array({1.0, 0.1, -0.0, 9007199254740993LL, "]", Value::array()}); break;
      case 3: data = Value::object({{"nested", Value::object({{"deeper", Value::array({Value::object()})}})}}); break;
      case 4: data = Value("a string, [not] an {array}"); break;
      default: data = Value::object({{"state", Value::object({{"not", "a checkpoint's"}})}}); break;
    }
    // Times that go up, stay, go back, and before the epoch.
    const int64_t times[] = {1700000000000, 1700000000000, 1700000000005, 1699999999990, -3, 0, 1700000000001};
    const std::string kinds[] = {"step.started", "", "kind with \"quotes\" and , commas", "values", "ünïcode"};
    out.push_back(event(run_id, kinds[i % 5], data, times[i % 7]));
  }
  return out;
}

void require_same(const std::vector<EventRecord>& expected, const std::vector<EventRecord>& actual) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("event " << i);
    CHECK(actual[i].run_id == expected[i].run_id);
    CHECK(actual[i].seq == expected[i].seq);
    CHECK(actual[i].kind == expected[i].kind);
    CHECK(actual[i].created_at_ms == expected[i].created_at_ms);
    CHECK(actual[i].data.to_json() == expected[i].data.to_json());
  }
}

// list_events from every seq, with limits that end inside rows, at their
// ends and past the last event, gives exactly the expected events.
void require_every_read(Store& store, const std::string& run_id, const std::vector<EventRecord>& all) {
  for (int64_t after = -1; after <= static_cast<int64_t>(all.size()) + 1; ++after) {
    for (size_t limit : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, all.size(), SIZE_MAX}) {
      INFO("after " << after << ", limit " << limit);
      auto read = store.list_events(run_id, after, limit);
      REQUIRE(read.ok());
      std::vector<EventRecord> expected;
      for (const EventRecord& e : all) {
        if (e.seq > after && expected.size() < limit) expected.push_back(e);
      }
      require_same(expected, *read);
    }
  }
}

// A superstep's batch of `run`: checkpoint `version` with its events, the
// "values" one holding the checkpoint's very state.
orch::StoreBatch superstep(const RunRecord& run, int64_t version, const Value& state) {
  orch::StoreBatch batch;
  batch.checkpoint = orch::testing::sample_checkpoint_of(run.id, version, state);
  batch.run = run;
  batch.run->state = batch.checkpoint->state;
  batch.run->checkpoint_count = version;
  batch.events.push_back(event(run.id, "checkpoint.created", Value::object({{"checkpoint_id", batch.checkpoint->id}}), 5));
  batch.events.push_back(
      event(run.id, "values", Value::object({{"step", "node"}, {"state", batch.checkpoint->state}}), 6));
  batch.events.push_back(event(run.id, "custom", Value::object({{"v", version}}), 6));
  return batch;
}

}  // namespace

TEST_CASE("PostgreSQL events: a write's events are one row, read back exactly from any seq and with any limit", "[postgres][events]") {
  const std::string schema = orch::testing::fresh_schema("event_rows");
  auto store = open_store(schema);
  const RunRecord run = orch::testing::sample_running_run("r");
  REQUIRE(store->create_run(run).ok());
  REQUIRE(store->create_run(orch::testing::sample_running_run("s")).ok());
  std::vector<EventRecord> all;
  auto keep = [&all](const std::vector<EventRecord>& written) { all.insert(all.end(), written.begin(), written.end()); };

  // One event alone; a batch of many (a plain batch, one statement); one alone again.
  EventRecord single = event("r", "run.started", Value::object({{"input", 1}}), 1700000000000);
  auto seq = store->append_event(single);
  REQUIRE(seq.ok());
  single.seq = *seq;
  keep({single});
  orch::StoreBatch plain;
  plain.events = awkward_events("r", 40);
  REQUIRE(store->write_batch(plain).ok());
  keep(plain.events);
  single.seq = *store->append_event(single);
  keep({single});
  // Supersteps with a state: one alone (its run's own statement), then two
  // runs' in one group statement.
  const Value state = Value::object({{"items", Value::array({"distinctive-state"})}});
  orch::StoreBatch first = superstep(run, 1, state);
  REQUIRE(store->write_batch(first).ok());
  keep(first.events);
  orch::StoreBatch second = superstep(run, 2, Value::object({{"items", Value::array({"distinctive-state", 2})}}));
  orch::StoreBatch other = superstep(orch::testing::sample_running_run("s"), 1, state);
  for (const Status& status : store->write_batches_as_group({&second, &other})) {
    INFO(status.to_string());
    REQUIRE(status.ok());
  }
  keep(second.events);
  for (size_t i = 0; i < all.size(); ++i) REQUIRE(all[i].seq == static_cast<int64_t>(i) + 1);

  // One row per write; the states are the checkpoints', not the events'.
  const std::string q = "\"" + schema + "\".";
  CHECK(psql("SELECT string_agg(event_count::text, ',' ORDER BY last_seq) FROM " + q + "events WHERE run_id = 'r'") ==
        "1,40,1,3,3\n");
  CHECK(psql("SELECT count(*) FROM " + q + "events WHERE data LIKE '%distinctive%'") == "0\n");

  require_every_read(*store, "r", all);
  require_every_read(*open_store(schema), "r", all);  // without cached documents
  auto others = store->list_events("s", 0, 10);
  REQUIRE(others.ok());
  require_same(other.events, *others);

  // The checkpoints go: their states go back into the events' rows.
  Status truncated = store->truncate_checkpoints("r", 0);
  INFO(truncated.to_string());
  REQUIRE(truncated.ok());
  CHECK(psql("SELECT count(*) FROM " + q + "events WHERE run_id = 'r' AND data LIKE '%distinctive%' AND "
             "state_checkpoint_id = ''") == "2\n");
  require_every_read(*open_store(schema), "r", all);
}

TEST_CASE("PostgreSQL events: a damaged batch row is an error, not a crash", "[postgres][events][hardening]") {
  const std::string schema = orch::testing::fresh_schema("event_rows_damaged");
  auto store = open_store(schema);
  REQUIRE(store->create_run(orch::testing::sample_running_run("r")).ok());
  orch::StoreBatch batch;
  batch.events = awkward_events("r", 3);
  REQUIRE(store->write_batch(batch).ok());
  const std::string q = "\"" + schema + "\".";
  for (const char* damage : {"'[1", "'[[\"a\",{}]]", "'[1,2,3]", "'[[\"a\"],[\"b\"],[\"c\"]]",
                             "'[[\"a\",1,\"x\"],[\"b\",1],[\"c\",1]]", "'[[\"a\",1,0,1],[\"b\",1],[\"c\",1]]",
                             "'[[\"a\",1,0,2],[\"b\",1],[\"c\",1]]", "'{}"}) {
    INFO(damage);
    psql("UPDATE " + q + "events SET data = " + std::string(damage) + "'");
    auto read = store->list_events("r", 0, 10);
    CHECK(read.status().code() == StatusCode::kInternal);
  }
  psql("UPDATE " + q + "events SET data = '[[\"a\",1],[\"b\",2],[\"c\",3]]', event_count = 0");
  CHECK(store->list_events("r", 0, 10).status().code() == StatusCode::kInternal);
}

TEST_CASE("a schema 6 PostgreSQL database is upgraded in place: its events, a row each, read on, and new ones follow", "[postgres][migration]") {
  PostgresCluster& pg = orch::testing::require_postgres();
  // Runs and checkpoints written by this store, copied into a database at
  // schema 6; its events as schema 6 stored them, one row each, one of them
  // without its state (naming its checkpoint).
  const std::string source = orch::testing::fresh_schema("from6_source");
  const Value state = Value::object({{"items", Value::array({"from checkpoint 1"})}});
  {
    auto writer = open_store(source);
    REQUIRE(writer->create_run(orch::testing::sample_running_run("old")).ok());
    orch::StoreBatch batch = superstep(orch::testing::sample_running_run("old"), 1, state);
    REQUIRE(writer->write_batch(batch).ok());
  }
  const std::string schema = orch::testing::fresh_schema("from6");
  orch::testing::create_schema_at(pg, schema, 6);
  const std::string to = "\"" + schema + "\".", from = "\"" + source + "\".";
  const std::string run_columns =
      "pk, id, status, workflow_id, workflow, input, config, state, host_data, error, parent_run_id, parent_node, "
      "idempotency_key, forked_from_run_id, forked_from_checkpoint_id, created_at_ms, updated_at_ms, started_at_ms, "
      "ended_at_ms, input_tokens, output_tokens, checkpoint_count, recoveries, lease_owner, lease_expires_at_ms, "
      "lease_epoch, latest_checkpoint_id";
  const std::string checkpoint_columns =
      "id, run_pk, run_id, seq, parent_id, step_id, version, created_at_ms, kind, base_seq, chain_bytes, base_bytes, "
      "body";
  psql("INSERT INTO " + to + "runs (" + run_columns + ", last_event_seq) OVERRIDING SYSTEM VALUE SELECT " +
       run_columns + ", 4 FROM " + from + "runs; INSERT INTO " + to + "checkpoints (" + checkpoint_columns +
       ") SELECT " + checkpoint_columns + " FROM " + from + "checkpoints; INSERT INTO " + to +
       "events (run_pk, run_id, seq, kind, data, created_at_ms, state_checkpoint_id) SELECT pk, id, e.seq, e.kind, "
       "e.data, e.created_at_ms, e.ref FROM " + to + "runs, (VALUES (1, 'run.started', '{\"input\":1}', 10, ''), "
       "(2, 'checkpoint.created', '{\"checkpoint_id\":\"old-cp1\"}', 11, ''), (3, 'values', '{\"step\":\"node\"}', "
       "12, 'old-cp1'), (4, 'custom', '[1.0,\"x\"]', 12, '')) AS e(seq, kind, data, created_at_ms, ref)");

  auto store = open_store(schema);
  CHECK(psql("SELECT version FROM " + to + "orch_schema") ==
        std::to_string(orch::postgres_store_schema_version()) + "\n");
  CHECK(psql("SELECT string_agg(last_seq || ':' || event_count, ',' ORDER BY last_seq) FROM " + to + "events") ==
        "1:1,2:1,3:1,4:1\n");
  std::vector<EventRecord> all = {
      event("old", "run.started", Value::object({{"input", 1}}), 10),
      event("old", "checkpoint.created", Value::object({{"checkpoint_id", "old-cp1"}}), 11),
      event("old", "values", Value::object({{"step", "node"}, {"state", state}}), 12),
      event("old", "custom", Value::array({1.0, "x"}), 12)};
  for (size_t i = 0; i < all.size(); ++i) all[i].seq = static_cast<int64_t>(i) + 1;
  require_every_read(*store, "old", all);

  // New events follow, in a row of their own: old and new rows read as one run's events.
  orch::StoreBatch next = superstep(orch::testing::sample_running_run("old"), 2,
                                    Value::object({{"items", Value::array({"from checkpoint 1", 2})}}));
  std::vector<Status> written = store->write_batches_as_group({&next});
  INFO(written[0].to_string());
  REQUIRE(written[0].ok());
  CHECK(next.events.front().seq == 5);
  all.insert(all.end(), next.events.begin(), next.events.end());
  CHECK(psql("SELECT string_agg(last_seq || ':' || event_count, ',' ORDER BY last_seq) FROM " + to + "events") ==
        "1:1,2:1,3:1,4:1,7:3\n");
  require_every_read(*open_store(schema), "old", all);
  // Both shapes get their states back when their checkpoints go.
  Status truncated = store->truncate_checkpoints("old", 0);
  INFO(truncated.to_string());
  REQUIRE(truncated.ok());
  CHECK(psql("SELECT count(*) FROM " + to + "events WHERE state_checkpoint_id <> ''") == "0\n");
  require_every_read(*open_store(schema), "old", all);
}
