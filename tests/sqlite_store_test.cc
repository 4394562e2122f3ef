// SPDX-License-Identifier: MIT
// The SQLite store beyond the Store contract: durability across reopen,
// migrations, incremental checkpoint size, damaged data, several stores on
// one file. (The contract itself: store_conformance_test.cc.)
#include "orch/sqlite_store.h"
#include "store/sqlite/sqlite_connection.h"
#include "store/checkpoint_codec.h"
#include "store/sqlite/sqlite_packed_value.h"
#include "store/sqlite/sqlite_rows.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "support/store_samples.h"
#include "orch/store.h"
#include "store/sqlite/sqlite_store_testing.h"
#include "support/engine_fixture.h"

using orch::Checkpoint;
using orch::RunRecord;
using orch::RunStatus;
using orch::Status;
using orch::StatusCode;
using orch::StepRecord;
using orch::StepStatus;
using orch::Store;
using orch::Value;

namespace {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("orch-sqlite-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    if (!std::getenv("ORCH_KEEP_TEST_DB")) std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::shared_ptr<Store> open_store(const std::string& path,
                                  const orch::SqliteStoreOptions& options = {}) {
  auto store = orch::open_sqlite_store(path, options);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

// A store that writes each event in a row of its own, as before schema 10:
// for the tests that turn its file back into an older schema.
std::shared_ptr<Store> open_unbatched_store(const std::string& path) {
  auto store = open_store(path);
  REQUIRE(orch::sqlite_batch_events_for_testing(*store, false).ok());
  return store;
}

RunRecord make_run(const std::string& id) { return orch::testing::sample_running_run(id); }

Checkpoint make_checkpoint(const std::string& run_id, int64_t version, Value state) {
  return orch::testing::sample_checkpoint_of(run_id, version, std::move(state));
}

void commit(Store& store, RunRecord& run, const Checkpoint& cp) {
  run.state = cp.state;
  run.checkpoint_count = cp.version + 1;
  Status s = store.commit_checkpoint(cp, run, false);
  INFO(s.to_string());
  REQUIRE(s.ok());
}

// Exact: same JSON text, so key order and int/double are kept.
void require_same_text(const Value& expected, const Value& actual) {
  REQUIRE(expected.to_json() == actual.to_json());
}

// A state that grows by one list item per step, with a counter beside it.
using orch::testing::grown_state;

// Turns a file of schema 9 back into schema 8: event data, checkpoint
// bodies and steps' input and output as JSON text, event and step times
// whole, step statuses by name.
// (Schema 10's checkpoint kinds and node types become words again first; its
// batch rows are not written by open_unbatched_store's stores.)
const char* const kBackToSchema8 = R"sql(
UPDATE checkpoints SET kind = CASE kind WHEN 's' THEN 'snapshot' WHEN 'd' THEN 'delta' ELSE kind END;
UPDATE steps SET type = CASE WHEN typeof(type) <> 'blob' THEN type WHEN type = x'01' THEN 'task' WHEN type = x'02' THEN 'agent'
                             WHEN type = x'03' THEN 'route' WHEN type = x'04' THEN 'interrupt' WHEN type = x'05' THEN 'send'
                             WHEN type = x'06' THEN 'transform' WHEN type = x'07' THEN 'subgraph' ELSE type END;
UPDATE events SET data = orch_unpack_json(data);
UPDATE steps SET input = orch_unpack_json(input), output = orch_unpack_json(output),
  status = CASE status WHEN '1' THEN 'pending' WHEN '2' THEN 'ready' WHEN '3' THEN 'running' WHEN '4' THEN 'completed'
                       WHEN '5' THEN 'failed' WHEN '6' THEN 'skipped' WHEN '7' THEN 'interrupted' ELSE status END,
  started_at_ms = CASE WHEN started_at_ms = 0 THEN 0 WHEN started_at_ms > 0 THEN created_at_ms + started_at_ms - 1
                       ELSE created_at_ms + started_at_ms END,
  ended_at_ms = CASE WHEN ended_at_ms = 0 THEN 0 WHEN ended_at_ms > 0 THEN created_at_ms + ended_at_ms - 1
                     ELSE created_at_ms + ended_at_ms END;
UPDATE events SET created_at_ms = created_at_ms + COALESCE((SELECT f.created_at_ms FROM events f
                                                            WHERE f.run_pk = events.run_pk AND f.seq = 1), 0)
  WHERE seq > 1;
UPDATE checkpoints SET body = orch_unpack_json(body);
PRAGMA user_version = 8;
)sql";

// After kBackToSchema8, turns the file back into schema 6 (lease epochs
// dropped, then schema 7's changes undone), rows included (events stored
// whole only), so the tests of older migrations can start from the schema
// they were written against.
// (uuid_text(x) stands for the SQL that turns a 16-byte id back into its UUID text.)
const char* const kBackToSchema6Template = R"sql(
ALTER TABLE runs DROP COLUMN lease_epoch;
UPDATE runs SET workflow = COALESCE((SELECT body FROM definitions WHERE pk = runs.definition_pk), workflow);
UPDATE steps SET id = uuid_text(id), run_id = COALESCE((SELECT r.id FROM runs r WHERE r.pk = steps.run_pk), run_id);
DROP INDEX runs_by_definition;
ALTER TABLE runs DROP COLUMN definition_pk;
DROP TABLE definitions;
CREATE TABLE c6 (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, run_pk INTEGER NOT NULL, run_id TEXT NOT NULL,
                 seq INTEGER NOT NULL, parent_id TEXT NOT NULL, step_id TEXT NOT NULL, version INTEGER NOT NULL,
                 created_at_ms INTEGER NOT NULL, kind TEXT NOT NULL, base_seq INTEGER NOT NULL,
                 chain_bytes INTEGER NOT NULL, base_bytes INTEGER NOT NULL, body TEXT NOT NULL, UNIQUE (run_pk, seq));
INSERT INTO c6 SELECT c.pk, uuid_text(c.id), c.run_pk, r.id, c.seq,
                      uuid_text(COALESCE(c.parent_id, (SELECT p.id FROM checkpoints p WHERE p.run_pk = c.run_pk AND p.seq = c.seq - 1), '')),
                      c.step_id, c.version, c.created_at_ms, c.kind, c.base_seq, c.chain_bytes, c.base_bytes, c.body
               FROM checkpoints c JOIN runs r ON r.pk = c.run_pk ORDER BY c.pk;
DROP TABLE checkpoints;
ALTER TABLE c6 RENAME TO checkpoints;
CREATE TABLE e6 (pk INTEGER PRIMARY KEY, run_pk INTEGER NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
                 kind TEXT NOT NULL, data TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
                 state_checkpoint_id TEXT NOT NULL DEFAULT '', UNIQUE (run_pk, seq));
INSERT INTO e6 (run_pk, run_id, seq, kind, data, created_at_ms)
  SELECT e.run_pk, r.id, e.seq, e.kind, e.data, e.created_at_ms FROM events e JOIN runs r ON r.pk = e.run_pk
  WHERE e.form = 0 ORDER BY e.run_pk, e.seq;
DROP TABLE events;
ALTER TABLE e6 RENAME TO events;
PRAGMA user_version = 6;
)sql";

std::string back_to_schema6_sql() {
  std::string sql = std::string(kBackToSchema8) + kBackToSchema6Template;
  for (size_t at = sql.find("uuid_text("); at != std::string::npos; at = sql.find("uuid_text(", at)) {
    // The argument runs to the matching parenthesis.
    size_t end = at + 10;
    for (int depth = 1; depth > 0; ++end) depth += sql[end] == '(' ? 1 : sql[end] == ')' ? -1 : 0;
    const std::string x = "(" + sql.substr(at + 10, end - 1 - (at + 10)) + ")";
    const std::string h = "hex(" + x + ")";
    const std::string text = "(CASE WHEN typeof(" + x + ") = 'blob' THEN lower(substr(" + h + ", 1, 8) || '-' || substr(" +
                             h + ", 9, 4) || '-' || substr(" + h + ", 13, 4) || '-' || substr(" + h +
                             ", 17, 4) || '-' || substr(" + h + ", 21, 12)) ELSE " + x + " END)";
    sql.replace(at, end - at, text);
    at += text.size();
  }
  return sql;
}
const std::string kBackToSchema6 = back_to_schema6_sql();

// Damages the file with `sql`; reading run "r"'s events from `after_seq`
// must then fail with Internal (an error, not a crash).
void check_damage_fails(orch::Store& store, const std::string& sql, int64_t after_seq, size_t limit) {
  INFO(sql);
  REQUIRE(orch::sqlite_execute_for_testing(store, sql).ok());
  CHECK(store.list_events("r", after_seq, limit).status().code() == StatusCode::kInternal);
}

}  // namespace


TEST_CASE("a SQLite store keeps everything across close and reopen", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  std::vector<Checkpoint> expected;
  RunRecord run = make_run("durable");
  run.idempotency_key = "key-durable";
  {
    auto store = open_store(path);
    REQUIRE(store->create_run(run).ok());
    Value state = Value::object({{"z", 1}, {"a", 2.0}});
    for (int v = 0; v < 50; ++v) {
      state = grown_state(state, v);
      Checkpoint cp = make_checkpoint("durable", v, state);
      cp.completed_nodes = {"n" + std::to_string(v)};
      commit(*store, run, cp);
      expected.push_back(cp);
    }
    orch::StepRecord step;
    step.id = "durable-step";
    step.run_id = "durable";
    step.node_name = "a";
    step.output = Value::object({{"out", "text"}});
    REQUIRE(store->put_step(step).ok());
    for (int i = 0; i < 3; ++i) {
      orch::EventRecord event;
      event.run_id = "durable";
      event.kind = "values";
      event.data = Value::object({{"i", i}});
      REQUIRE(store->append_event(event).ok());
    }
    REQUIRE(store->put_pending_write({"durable", 50, "a", Value::object({{"ok", true}})}).ok());
    orch::WorkflowRecord wf;
    wf.id = "wf";
    wf.name = "Workflow";
    wf.definition = Value::object({{"nodes", Value::object()}});
    REQUIRE(store->put_workflow(wf, true).ok());
  }

  auto store = open_store(path);
  auto got = store->get_run("durable");
  REQUIRE(got.ok());
  require_same_text(run.state, got->state);
  CHECK(got->checkpoint_count == 50);
  CHECK(store->find_run_by_idempotency_key("key-durable").ok());
  auto cps = store->list_checkpoints("durable");
  REQUIRE(cps.ok());
  REQUIRE(cps->size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    require_same_text(expected[i].state, (*cps)[i].state);
    CHECK((*cps)[i].completed_nodes == expected[i].completed_nodes);
    auto one = store->get_checkpoint(expected[i].id);
    REQUIRE(one.ok());
    require_same_text(expected[i].state, one->state);
  }
  auto step = store->get_step("durable-step");
  REQUIRE(step.ok());
  CHECK(step->output["out"].as_string() == "text");
  auto events = store->list_events("durable", 0, 10);
  REQUIRE(events.ok());
  CHECK(events->size() == 3);
  CHECK(store->list_pending_writes("durable")->size() == 1);
  CHECK(store->get_workflow("wf").ok());

  // Seqs and the checkpoint chain continue where they were (the reopened
  // store has no cached document, so it diffs against the stored one).
  orch::EventRecord event;
  event.run_id = "durable";
  event.kind = "values";
  CHECK(store->append_event(event).value() == 4);
  Checkpoint next = make_checkpoint("durable", 50, grown_state(expected.back().state, 50));
  commit(*store, run, next);
  auto latest = store->latest_checkpoint("durable");
  REQUIRE(latest.ok());
  require_same_text(next.state, latest->state);
  CHECK(store->list_pending_writes("durable")->empty());
}

TEST_CASE("opening migrates once and refuses newer or foreign files", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  {
    auto a = open_store(path);
    auto b = open_store(path);  // a second store on the same file, at the same time
    REQUIRE(a->create_run(make_run("r1")).ok());
    CHECK(b->get_run("r1").ok());
  }
  for (int i = 0; i < 3; ++i) {
    auto again = open_store(path);
    CHECK(again->get_run("r1").ok());
  }
  CHECK(orch::sqlite_store_schema_version() >= 1);

  {
    auto store = open_store(path);
    REQUIRE(orch::sqlite_execute_for_testing(
                *store,
                "PRAGMA user_version = " + std::to_string(orch::sqlite_store_schema_version() + 1))
                .ok());
  }
  auto newer = orch::open_sqlite_store(path);
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.status().code() == StatusCode::kFailedPrecondition);
  CHECK(newer.status().message().find("newer") != std::string::npos);

  {
    auto store = open_store(dir.file("foreign.db"));
    REQUIRE(orch::sqlite_execute_for_testing(*store, "PRAGMA application_id = 42").ok());
  }
  auto foreign = orch::open_sqlite_store(dir.file("foreign.db"));
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.status().code() == StatusCode::kFailedPrecondition);

  CHECK(orch::open_sqlite_store("").status().code() == StatusCode::kInvalidArgument);
  CHECK_FALSE(orch::open_sqlite_store(dir.file("no-such-dir/orch.db")).ok());
}

TEST_CASE("a schema 2 file's events survive the upgrade to rowid events", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  {
    auto store = open_unbatched_store(path);
    REQUIRE(store->create_run(make_run("old")).ok());
    // Put the events table back as schema 2 had it, with two events.
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6 + R"sql(
DROP TABLE events;
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
                     created_at_ms INTEGER NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
INSERT INTO events VALUES ('old', 2, 'values', '{"state":{"b":2}}', 20), ('old', 1, 'run.started', '{}', 10);
UPDATE runs SET last_event_seq = 2 WHERE id = 'old';
ALTER TABLE runs DROP COLUMN recoveries;  -- added by schema 5
DROP TABLE host_records;  -- schema 6
CREATE TABLE worker_records (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
ALTER TABLE runs RENAME COLUMN host_data TO callbacks;
PRAGMA user_version = 2;
)sql").ok());
  }
  auto store = open_store(path);
  auto events = store->list_events("old", 0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 2);
  CHECK((*events)[0].kind == "run.started");
  CHECK((*events)[1].seq == 2);
  CHECK((*events)[1].data.to_json() == R"({"state":{"b":2}})");
  orch::EventRecord next;
  next.run_id = "old";
  next.kind = "after";
  auto seq = store->append_event(next);
  REQUIRE(seq.ok());
  CHECK(*seq == 3);
}

TEST_CASE("a new database file and its log are readable by their owner only", "[sqlite][hardening]") {
  // It holds worker tokens and callback HMAC secrets.
  TempDir dir;
  const std::string path = dir.file("orch.db");
  auto store = open_store(path);
  REQUIRE(store->create_run(make_run("r")).ok());
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(stat((path + "-wal").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("a schema 4 file's runs get a recovery count of 0", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  {
    auto store = open_unbatched_store(path);
    REQUIRE(store->create_run(make_run("old")).ok());
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6 + R"sql(
ALTER TABLE runs DROP COLUMN recoveries;
DROP TABLE host_records;  -- schema 6
CREATE TABLE worker_records (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
ALTER TABLE runs RENAME COLUMN host_data TO callbacks;
PRAGMA user_version = 4;
)sql").ok());
  }
  auto store = open_store(path);
  auto run = store->get_run("old");
  REQUIRE(run.ok());
  CHECK(run->recoveries == 0);
  run->recoveries = 2;
  REQUIRE(store->update_run(*run).ok());
  CHECK(store->get_run("old")->recoveries == 2);
}

TEST_CASE("a schema 5 file's worker records and callbacks become host records and host data", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  {
    auto store = open_unbatched_store(path);
    REQUIRE(store->create_run(make_run("with")).ok());
    REQUIRE(store->create_run(make_run("without")).ok());
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6 + R"sql(
DROP TABLE host_records;
CREATE TABLE worker_records (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
INSERT INTO worker_records (id, record) VALUES ('w2', '{"id":"w2"}'), ('w1', '{"id":"w1","url":"http://a/x"}');
ALTER TABLE runs RENAME COLUMN host_data TO callbacks;
UPDATE runs SET callbacks = '[{"url":"http://cb/x"}]' WHERE id = 'with';
UPDATE runs SET callbacks = 'null' WHERE id = 'without';
PRAGMA user_version = 5;
)sql").ok());
  }
  auto store = open_store(path);
  auto records = store->list_host_records("workers");
  REQUIRE(records.ok());
  REQUIRE(records->size() == 2);
  CHECK((*records)[0].to_json() == R"({"id":"w2"})");
  CHECK((*records)[1]["url"].as_string() == "http://a/x");
  CHECK(store->get_run("with")->host_data.to_json() == R"({"callbacks":[{"url":"http://cb/x"}]})");
  CHECK(store->get_run("without")->host_data.is_null());
}

TEST_CASE("a schema 3 file's steps, checkpoints and events survive the move to run pks", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  std::vector<Checkpoint> expected;
  {
    auto store = open_unbatched_store(path);
    REQUIRE(store->create_run(make_run("first")).ok());  // takes pk 1: the runs' pks differ from 0
    RunRecord run = make_run("v3");
    REQUIRE(store->create_run(run).ok());
    Value state = Value::object({{"items", Value::array()}});
    for (int v = 0; v < 4; ++v) {  // a snapshot and deltas after it
      state = grown_state(state, v);
      expected.push_back(make_checkpoint("v3", v, state));
      commit(*store, run, expected.back());
    }
    orch::StepRecord step;
    step.id = "v3-step";
    step.run_id = "v3";
    step.node_name = "a";
    REQUIRE(store->put_step(step).ok());
    orch::EventRecord event;
    event.run_id = "v3";
    event.kind = "run.started";
    REQUIRE(store->append_event(event).ok());
    // Rebuild the three tables as schema 3 had them: keyed by run_id.
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6 + R"sql(
CREATE TABLE e3 (pk INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
                 data TEXT NOT NULL, created_at_ms INTEGER NOT NULL, state_checkpoint_id TEXT NOT NULL DEFAULT '',
                 UNIQUE (run_id, seq));
INSERT INTO e3 SELECT pk, run_id, seq, kind, data, created_at_ms, state_checkpoint_id FROM events;
DROP TABLE events;
ALTER TABLE e3 RENAME TO events;
CREATE TABLE c3 (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
                 parent_id TEXT NOT NULL, step_id TEXT NOT NULL, version INTEGER NOT NULL,
                 created_at_ms INTEGER NOT NULL, kind TEXT NOT NULL, base_seq INTEGER NOT NULL,
                 chain_bytes INTEGER NOT NULL, base_bytes INTEGER NOT NULL, body TEXT NOT NULL, UNIQUE (run_id, seq));
INSERT INTO c3 SELECT pk, id, run_id, seq, parent_id, step_id, version, created_at_ms, kind, base_seq,
                      chain_bytes, base_bytes, body FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE c3 RENAME TO checkpoints;
DROP INDEX steps_by_run;
ALTER TABLE steps DROP COLUMN run_pk;
CREATE INDEX steps_by_run ON steps (run_id, pk);
ALTER TABLE runs DROP COLUMN recoveries;  -- added by schema 5
DROP TABLE host_records;  -- schema 6
CREATE TABLE worker_records (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
ALTER TABLE runs RENAME COLUMN host_data TO callbacks;
PRAGMA user_version = 3;
)sql").ok());
  }
  auto store = open_store(path);
  CHECK(*orch::sqlite_query_int_for_testing(*store, "SELECT count(*) FROM checkpoints WHERE run_pk = 2") == 4);
  auto checkpoints = store->list_checkpoints("v3");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) require_same_text(expected[i].state, (*checkpoints)[i].state);
  CHECK(store->get_checkpoint("v3-cp2")->state.to_json() == expected[2].state.to_json());
  CHECK(store->latest_checkpoint("v3")->id == "v3-cp3");
  CHECK(store->get_step("v3-step")->node_name == "a");
  REQUIRE(store->list_steps("v3")->size() == 1);
  REQUIRE(store->list_events("v3", 0, 10)->size() == 1);
  // And the run goes on: more rows, read back in order, then all of it deleted.
  orch::EventRecord next;
  next.run_id = "v3";
  next.kind = "after";
  CHECK(*store->append_event(next) == 2);
  CHECK(store->list_events("v3", 1, 10)->at(0).kind == "after");
  REQUIRE(store->delete_run("v3").ok());
  CHECK(*orch::sqlite_query_int_for_testing(*store, "SELECT count(*) FROM events") == 0);
  CHECK(*orch::sqlite_query_int_for_testing(*store, "SELECT count(*) FROM checkpoints") == 0);
  CHECK(*orch::sqlite_query_int_for_testing(*store, "SELECT count(*) FROM steps") == 0);
  CHECK(store->get_run("first").ok());
}

TEST_CASE("a run's rows are found through indexes, never by scanning a table", "[sqlite]") {
  // With many runs in a file, a statement that scans events or checkpoints
  // instead of seeking by the run costs time in proportion to all runs ever
  // kept: every statement the store ran here must have used a key.
  TempDir dir;
  auto store = open_store(dir.file("indexed.db"));
  for (int r = 0; r < 3; ++r) {
    const std::string id = "run" + std::to_string(r);
    RunRecord run = make_run(id);
    REQUIRE(store->create_claimed_run(run, "owner", 60000).ok());
    for (int v = 0; v < 4; ++v) {
      orch::StoreBatch batch;
      orch::StepRecord step;
      step.id = id + "-step" + std::to_string(v);
      step.run_id = id;
      step.node_name = "n";
      batch.steps.push_back(step);
      batch.checkpoint = make_checkpoint(id, v, Value::object({{"v", v}}));
      run.state = batch.checkpoint->state;
      run.checkpoint_count = v + 1;
      batch.run = run;
      orch::EventRecord event;
      event.run_id = id;
      event.kind = "values";
      event.data = Value::object({{"state", batch.checkpoint->state}});
      batch.events.push_back(event);
      REQUIRE(store->write_batch(batch).ok());
    }
    orch::StepRecord extra;
    extra.id = id + "-extra";
    extra.run_id = id;
    REQUIRE(store->put_step(extra).ok());
    orch::EventRecord event;
    event.run_id = id;
    event.kind = "note";
    REQUIRE(store->append_event(event).ok());
    REQUIRE(store->put_pending_write({id, 1, "n", Value(1)}).ok());
  }
  CHECK(store->list_events("run1", 0, 100)->size() == 5);
  CHECK(store->list_steps("run1")->size() == 5);
  CHECK(store->list_checkpoints("run1")->size() == 4);
  CHECK(store->list_pending_writes("run1")->size() == 1);
  CHECK(store->latest_checkpoint("run1")->id == "run1-cp3");
  CHECK(store->get_checkpoint("run2-cp1").ok());
  CHECK(store->get_step("run0-extra").ok());
  CHECK(store->get_run("run1").ok());
  CHECK(*orch::sqlite_checkpoint_bytes(*store, "run1") > 0);
  CHECK(store->claim_run("run1", "owner", 60000).ok());
  REQUIRE(store->truncate_checkpoints("run2", 1).ok());
  REQUIRE(store->delete_run("run0").ok());
  auto scans = orch::sqlite_full_scans_for_testing(*store);
  REQUIRE(scans.ok());
  std::string all;
  for (const std::string& sql : *scans) all += sql + "\n";
  INFO(all);
  CHECK(scans->empty());
}

TEST_CASE("a transaction of megabytes commits whole and reads back from another store", "[sqlite]") {
  // The store gathers a transaction's log writes into large writes; one
  // transaction here is far larger than a single write may be.
  TempDir dir;
  const std::string path = dir.file("orch.db");
  auto store = open_store(path);
  RunRecord run = make_run("big");
  REQUIRE(store->create_run(run).ok());
  Value state = Value::object({{"blob", std::string(3 << 20, 'x')}, {"n", 1}});
  commit(*store, run, make_checkpoint("big", 0, state));
  auto other = open_store(path);
  auto latest = other->latest_checkpoint("big");
  REQUIRE(latest.ok());
  CHECK(latest->state["blob"].as_string().size() == (3u << 20));
  CHECK(latest->state["n"].as_int() == 1);
}

TEST_CASE("a file that is not a database gives an error, not a crash", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 7919) & 0xff));
  }
  auto store = orch::open_sqlite_store(path);
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == StatusCode::kInternal);
}

TEST_CASE("1000 steps that each append to a list store linearly", "[sqlite][size]") {
  TempDir dir;
  auto store = open_store(dir.file("orch.db"));
  RunRecord run = make_run("chain");
  REQUIRE(store->create_run(run).ok());
  constexpr int kSteps = 1000;
  Value state = Value::object({{"items", Value::array()}, {"step", 0}});
  std::vector<Value> states;
  for (int v = 0; v < kSteps; ++v) {
    state = grown_state(state, v);
    Checkpoint cp = make_checkpoint("chain", v, state);
    cp.completed_nodes.reserve(static_cast<size_t>(v));
    for (int n = 0; n <= v; ++n) cp.completed_nodes.push_back("node" + std::to_string(n));
    commit(*store, run, cp);
    states.push_back(state);
  }
  const auto final_bytes = static_cast<int64_t>(state.to_json().size());
  auto stored = orch::sqlite_checkpoint_bytes(*store, "chain");
  REQUIRE(stored.ok());
  const double ratio = static_cast<double>(*stored) / static_cast<double>(final_bytes);
  WARN("1000-step chain: checkpoints "
       << *stored << " bytes, final state " << final_bytes << " bytes, ratio " << ratio
       << " (a full state per step would be ~" << kSteps / 2 << "x)");
  CHECK(ratio < 20.0);

  // Every checkpoint still reads back whole.
  auto cps = store->list_checkpoints("chain");
  REQUIRE(cps.ok());
  REQUIRE(cps->size() == static_cast<size_t>(kSteps));
  for (int v = 0; v < kSteps; v += 37)
    require_same_text(states[static_cast<size_t>(v)], (*cps)[static_cast<size_t>(v)].state);
  require_same_text(states.back(), cps->back().state);
  CHECK(cps->back().completed_nodes.size() == static_cast<size_t>(kSteps));
  for (int v : {0, 1, 127, 128, 129, 500, 998, 999}) {
    auto one = store->get_checkpoint("chain-cp" + std::to_string(v));
    REQUIRE(one.ok());
    require_same_text(states[static_cast<size_t>(v)], one->state);
  }
  // Reading the latest back cold (no cached document) walks its chain.
  auto cold = open_store(dir.file("orch.db"));
  auto started = std::chrono::steady_clock::now();
  auto latest = cold->latest_checkpoint("chain");
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  REQUIRE(latest.ok());
  require_same_text(states.back(), latest->state);
  WARN("cold latest_checkpoint of the 1000-step chain: " << took.count() << " us");
  CHECK_FALSE(orch::sqlite_checkpoint_bytes(*orch::new_memory_store(), "chain").ok());
}

TEST_CASE("SQLite read-back is exact: key order and number types", "[sqlite]") {
  auto store = open_store(":memory:");
  RunRecord run = make_run("exact");
  REQUIRE(store->create_run(run).ok());
  std::vector<Value> states = {
      orch::testing::json(R"({"a":1,"b":{"x":1,"y":2},"c":[1,2]})"),
      orch::testing::json(R"({"c":[1,2,3],"a":1,"b":{"y":2,"x":1}})"),  // reordered at two levels
      orch::testing::json(R"({"c":[1,2,3],"a":1.0,"b":{"y":2,"x":1},"d":-0.0})"),
      orch::testing::json(R"({"c":[1,2,3,4.5],"a":1,"b":{"y":2}})"),
      orch::testing::json(R"({"c":[],"a":"1","b":{"y":2,"z":{"deep":[{"k":null}]}}})"),
      orch::testing::json(R"({"c":[],"b":{"z":{"deep":[{"k":null},{"k":true}]},"y":2}})"),
      orch::testing::json(R"([1,2,3])"),  // not even an object
      orch::testing::json(R"({"back":"to an object"})"),
  };
  for (size_t i = 0; i < states.size(); ++i)
    commit(*store, run, make_checkpoint("exact", static_cast<int64_t>(i), states[i]));
  auto cps = store->list_checkpoints("exact");
  REQUIRE(cps.ok());
  REQUIRE(cps->size() == states.size());
  for (size_t i = 0; i < states.size(); ++i) {
    require_same_text(states[i], (*cps)[i].state);
    require_same_text(states[i], store->get_checkpoint("exact-cp" + std::to_string(i))->state);
  }
}

TEST_CASE("damaged rows give errors, not crashes", "[sqlite]") {
  TempDir dir;
  auto store = open_store(dir.file("orch.db"));
  RunRecord run = make_run("victim");
  REQUIRE(store->create_run(run).ok());
  // A large first snapshot keeps cp1..cp5 deltas on it, so the damage below
  // lands where intended.
  Value state = Value::object({{"items", Value::array()}, {"padding", std::string(10000, 'p')}});
  for (int v = 0; v < 6; ++v) {
    state = grown_state(state, v);
    commit(*store, run, make_checkpoint("victim", v, state));
  }
  auto exec = [&](const std::string& sql) {
    Status s = orch::sqlite_execute_for_testing(*store, sql);
    INFO(s.to_string());
    REQUIRE(s.ok());
  };
  auto expect_internal = [](const Status& s) {
    INFO(s.to_string());
    CHECK(s.code() == StatusCode::kInternal);
  };
  auto status_of = [](const auto& result) { return result.ok() ? Status() : result.status(); };

  SECTION("a delta body that is not JSON") {
    exec("UPDATE checkpoints SET body = '{not json' WHERE id = 'victim-cp3'");
    expect_internal(status_of(store->get_checkpoint("victim-cp3")));
    expect_internal(status_of(store->get_checkpoint("victim-cp5")));
    expect_internal(status_of(store->list_checkpoints("victim")));
    CHECK(store->get_checkpoint("victim-cp2").ok());
    // A commit has to diff against the damaged chain: it fails and stores nothing.
    Status s = store->commit_checkpoint(make_checkpoint("victim", 6, state), run, false);
    expect_internal(s);
    CHECK(store->get_checkpoint("victim-cp6").status().code() == StatusCode::kNotFound);
  }
  SECTION("a delta that does not fit its base") {
    exec(
        "UPDATE checkpoints SET kind = 'delta', body = '[[\"a\",[\"state\",\"nope\",\"x\"],[1]]]' "
        "WHERE id = 'victim-cp4'");
    exec("UPDATE checkpoints SET kind = 'delta' WHERE id = 'victim-cp0'");
    expect_internal(status_of(store->get_checkpoint("victim-cp4")));
    expect_internal(status_of(store->get_checkpoint("victim-cp0")));
    expect_internal(status_of(store->latest_checkpoint("victim")));
  }
  SECTION("a missing row in a chain") {
    exec("DELETE FROM checkpoints WHERE id = 'victim-cp1'");
    exec("UPDATE checkpoints SET kind = 'delta', base_seq = 0 WHERE seq > 1");
    expect_internal(status_of(store->get_checkpoint("victim-cp4")));
    expect_internal(status_of(store->list_checkpoints("victim")));
  }
  SECTION("an unknown kind, a snapshot that is not an object, odd bookkeeping") {
    exec("UPDATE checkpoints SET kind = 'zip' WHERE id = 'victim-cp0'");
    expect_internal(status_of(store->get_checkpoint("victim-cp0")));
    exec("UPDATE checkpoints SET kind = 'snapshot', body = '[1,2]' WHERE id = 'victim-cp0'");
    expect_internal(status_of(store->get_checkpoint("victim-cp0")));
    exec("UPDATE checkpoints SET base_seq = 99 WHERE id = 'victim-cp5'");
    expect_internal(status_of(store->get_checkpoint("victim-cp5")));
    exec("UPDATE checkpoints SET body = '{\"state\":1}' WHERE id = 'victim-cp0'");
    expect_internal(status_of(store->get_checkpoint("victim-cp0")));
  }
  SECTION("garbage in run, step, event, write and workflow rows") {
    orch::StepRecord step;
    step.id = "s";
    step.run_id = "victim";
    REQUIRE(store->put_step(step).ok());
    orch::EventRecord event;
    event.run_id = "victim";
    event.kind = "k";
    REQUIRE(store->append_event(event).ok());
    REQUIRE(store->put_pending_write({"victim", 1, "a", Value(1)}).ok());
    orch::WorkflowRecord wf;
    wf.id = "wf";
    REQUIRE(store->put_workflow(wf, false).ok());

    exec("UPDATE runs SET state = x'00ff' WHERE id = 'victim'");
    expect_internal(status_of(store->get_run("victim")));
    expect_internal(status_of(store->list_runs({})));
    exec("UPDATE runs SET state = '{}', status = 'exploded' WHERE id = 'victim'");
    expect_internal(status_of(store->get_run("victim")));
    exec("UPDATE steps SET status = 42");
    expect_internal(status_of(store->get_step("s")));
    exec("UPDATE steps SET status = 'completed', output = '[1,'");
    expect_internal(status_of(store->get_step("s")));
    exec("UPDATE events SET data = ''");
    expect_internal(status_of(store->list_events("victim", 0, 10)));
    exec("UPDATE pending_writes SET result = 'nul'");
    expect_internal(status_of(store->list_pending_writes("victim")));
    exec("UPDATE workflows SET definition = '{\"a\":}'");
    expect_internal(status_of(store->get_workflow("wf")));
    expect_internal(status_of(store->list_workflows()));
  }
}

TEST_CASE("a failed commit changes nothing", "[sqlite]") {
  auto store = open_store(":memory:");
  RunRecord run = make_run("atomic");
  REQUIRE(store->create_run(run).ok());
  commit(*store, run, make_checkpoint("atomic", 0, Value::object({{"v", 0}})));
  REQUIRE(store->put_pending_write({"atomic", 1, "a", Value(1)}).ok());

  // Reusing a checkpoint id fails after the run row was already updated in
  // the transaction: all of it must roll back.
  RunRecord changed = run;
  changed.status = RunStatus::kCompleted;
  changed.state = Value::object({{"v", 1}});
  Checkpoint dup = make_checkpoint("atomic", 1, changed.state);
  dup.id = "atomic-cp0";
  Status s = store->commit_checkpoint(dup, changed, true);
  CHECK(s.code() == StatusCode::kAlreadyExists);
  auto got = store->get_run("atomic");
  REQUIRE(got.ok());
  CHECK(got->status == RunStatus::kRunning);
  CHECK(got->state["v"].as_int() == 0);
  CHECK(store->list_pending_writes("atomic")->size() == 1);
  CHECK(store->list_checkpoints("atomic")->size() == 1);

  // And the store is fine afterwards (the sync setting was restored).
  commit(*store, run, make_checkpoint("atomic", 1, Value::object({{"v", 1}})));
  CHECK(store->latest_checkpoint("atomic")->state["v"].as_int() == 1);
  CHECK(store->commit_checkpoint(make_checkpoint("other", 0, Value()), run, false).code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("leases fence other owners until they expire", "[sqlite]") {
  auto store = open_store(":memory:");
  REQUIRE(store->create_run(make_run("leased")).ok());
  CHECK(store->claim_run("leased", "a", 60000).ok());
  CHECK(store->claim_run("leased", "a", 60000).ok());
  Status taken = store->claim_run("leased", "b", 60000);
  CHECK(taken.code() == StatusCode::kAborted);
  CHECK(taken.message().find("a") != std::string::npos);
  CHECK(store->claim_run("leased", "a", -1).ok());  // a lets it lapse
  CHECK(store->claim_run("leased", "b", 60000).ok());
  CHECK(store->claim_run("missing", "a", 1000).code() == StatusCode::kNotFound);
}

TEST_CASE("create_claimed_run writes the run and its lease in one commit", "[sqlite]") {
  auto store = open_store(":memory:");
  REQUIRE(store->create_claimed_run(make_run("claimed"), "a", 60000).ok());
  CHECK(store->get_run("claimed").ok());
  CHECK(*orch::sqlite_query_int_for_testing(*store, "SELECT count(*) FROM runs WHERE lease_owner = 'a'") == 1);
  CHECK(store->claim_run("claimed", "a", 60000).ok());
  CHECK(store->claim_run("claimed", "b", 60000).code() == StatusCode::kAborted);
  // Taken ids and idempotency keys are refused as by create_run, with no lease left behind.
  CHECK(store->create_claimed_run(make_run("claimed"), "b", 60000).code() == StatusCode::kAlreadyExists);
  CHECK(*orch::sqlite_query_int_for_testing(*store, "SELECT count(*) FROM runs WHERE lease_owner = 'b'") == 0);
}

TEST_CASE("two stores on one file: concurrent writers and a stale cache", "[sqlite][concurrency]") {
  TempDir dir;
  const std::string path = dir.file("shared.db");
  auto a = open_store(path);
  auto b = open_store(path);

  SECTION("writers on different runs, from both stores") {
    constexpr int kThreads = 6;
    constexpr int kSteps = 40;
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
          if (!store.commit_checkpoint(make_checkpoint(run.id, v, state), run, v % 10 == 0).ok())
            ++failures;
          orch::EventRecord event;
          event.run_id = run.id;
          event.kind = "values";
          if (store.append_event(event).value_or(-1) != v + 1) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    for (int t = 0; t < kThreads; ++t) {
      // Read through the other store than the writer used.
      Store& reader = t % 2 == 0 ? *b : *a;
      auto cps = reader.list_checkpoints("w" + std::to_string(t));
      REQUIRE(cps.ok());
      REQUIRE(cps->size() == static_cast<size_t>(kSteps));
      CHECK(cps->back().state["items"].size() == static_cast<size_t>(kSteps));
    }
  }

  SECTION("a run continued by another store is diffed against what is stored") {
    RunRecord run = make_run("handover");
    REQUIRE(a->create_run(run).ok());
    Value state = Value::object({{"items", Value::array()}});
    std::vector<Value> states;
    for (int v = 0; v < 9; ++v) {
      state = grown_state(state, v);
      states.push_back(state);
      // a, a, a, b, b, a, b, a, a: each store's cached document goes stale.
      Store& writer = (v == 3 || v == 4 || v == 6) ? *b : *a;
      commit(writer, run, make_checkpoint("handover", v, state));
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
    commit(*a, run, make_checkpoint("handover", 5, replay));
    auto latest = b->latest_checkpoint("handover");
    REQUIRE(latest.ok());
    require_same_text(replay, latest->state);
  }
}

TEST_CASE("truncate keeps later rows readable when versions are out of order", "[sqlite]") {
  // Versions are meant to increase; if a caller breaks that, truncation must
  // still not leave a delta whose chain was deleted.
  auto store = open_store(":memory:");
  RunRecord run = make_run("odd");
  REQUIRE(store->create_run(run).ok());
  Value state = Value::object({{"items", Value::array()}});
  std::vector<Value> states;
  const int64_t versions[] = {0, 1, 5, 6, 2, 3};
  for (int64_t version : versions) {
    state = grown_state(state, static_cast<int>(version));
    states.push_back(state);
    commit(*store, run, make_checkpoint("odd", version, state));
  }
  REQUIRE(store->truncate_checkpoints("odd", 3).ok());  // drops versions 5 and 6 (rows 2, 3)
  auto cps = store->list_checkpoints("odd");
  REQUIRE(cps.ok());
  REQUIRE(cps->size() == 4);
  require_same_text(states[0], (*cps)[0].state);
  require_same_text(states[1], (*cps)[1].state);
  require_same_text(states[4], (*cps)[2].state);
  require_same_text(states[5], (*cps)[3].state);
  require_same_text(states[5], store->latest_checkpoint("odd")->state);
  Value more = grown_state(states[5], 7);
  commit(*store, run, make_checkpoint("odd", 7, more));
  require_same_text(more, store->latest_checkpoint("odd")->state);
}

TEST_CASE("the engine runs a long loop on the SQLite store", "[sqlite][engine]") {
  TempDir dir;
  auto store = open_store(dir.file("engine.db"));
  // A loop of "work" and a route that leaves after 300 rounds: ~600 supersteps,
  // each appending one entry to state.log.
  auto wf = orch::testing::make_workflow(
      R"({"state_schema": {"log": {"type": "array", "reducer": "append"},
                           "count": {"type": "number", "reducer": "add"}},
          "nodes": {"work": {}, "check": {"type": "route", "input": "state.count",
                    "routes": {"300": "__end__"}, "default": "again"}},
          "edges": [["__start__","work"],["work","check"],["check:again","work"],["check:300","__end__"]]})",
      {{"work", [](const orch::NodeCall&) -> orch::Result<orch::NodeOutput> {
          return orch::NodeOutput(Value::object(
              {{"log", Value::array({"a line of output from one round of work"})}, {"count", 1}}));
        }}});
  auto engine = orch::testing::make_engine(nullptr, nullptr, store);
  RunRecord r = orch::testing::run_to_end(*engine, wf, Value::object(),
                                          orch::testing::json(R"({"recursion_limit": 2000})"));
  INFO(r.error);
  REQUIRE(r.status == RunStatus::kCompleted);
  CHECK(r.state["log"].size() == 300);

  auto cps = store->list_checkpoints(r.id);
  REQUIRE(cps.ok());
  REQUIRE(cps->size() > 300);
  require_same_text(r.state, cps->back().state);
  auto stored = orch::sqlite_checkpoint_bytes(*store, r.id);
  REQUIRE(stored.ok());
  // The bound covers state plus per-checkpoint metadata (scheduler state).
  const auto final_bytes = static_cast<int64_t>(r.state.to_json().size());
  WARN("engine loop: " << cps->size() << " checkpoints, " << *stored << " bytes; final state "
                       << final_bytes << " bytes");
  CHECK(*stored < 20 * final_bytes);

  // Each superstep's "values" event names its checkpoint instead of storing
  // the state a second time (in the row of its superstep's events, which
  // names the checkpoint), and still reads back with the state.
  auto batch_rows = orch::sqlite_query_int_for_testing(
      *store, "SELECT count(*) FROM events WHERE form = 4 AND checkpoint_seq IS NOT NULL");
  auto largest_row = orch::sqlite_query_int_for_testing(*store, "SELECT max(length(data)) FROM events");
  REQUIRE(batch_rows.ok());
  REQUIRE(largest_row.ok());
  CHECK(*batch_rows > 300);
  CHECK(*largest_row < static_cast<int64_t>(final_bytes) / 4);
  auto events = store->list_events(r.id, 0, 100000);
  REQUIRE(events.ok());
  const orch::EventRecord* last_values = nullptr;
  for (const orch::EventRecord& e : *events) {
    if (e.kind == "values") last_values = &e;
  }
  REQUIRE(last_values != nullptr);
  require_same_text(r.state, last_values->data["state"]);
}

TEST_CASE("host records persist across reopen", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  {
    auto store = orch::open_sqlite_store(path);
    REQUIRE(store.ok());
    REQUIRE((*store)->put_host_record("workers", "w1", orch::Value::object({{"id", "w1"}, {"url", "http://a/x"}})).ok());
    REQUIRE((*store)->put_host_record("workers", "w2", orch::Value::object({{"id", "w2"}})).ok());
    REQUIRE((*store)->put_host_record("workers", "w1", orch::Value::object({{"id", "w1"}, {"url", "http://b/x"}})).ok());
    CHECK((*store)->delete_host_record("workers", "w2").ok());
    CHECK((*store)->delete_host_record("workers", "w2").code() == orch::StatusCode::kNotFound);
  }
  auto store = orch::open_sqlite_store(path);
  REQUIRE(store.ok());
  auto records = (*store)->list_host_records("workers");
  REQUIRE(records.ok());
  REQUIRE(records->size() == 1);
  CHECK((*records)[0]["url"].as_string() == "http://b/x");
}

TEST_CASE("write_batch: one transaction, seqs after the run's last, all or nothing", "[sqlite]") {
  TempDir dir;
  auto store = open_store(dir.file("batch.db"));
  RunRecord run = make_run("batched");
  run.workflow = Value::object({{"nodes", Value::object({{"big", "definition"}})}});
  REQUIRE(store->create_run(run).ok());
  orch::EventRecord first;
  first.run_id = "batched";
  first.kind = "run.started";
  REQUIRE(*store->append_event(first) == 1);

  orch::StoreBatch batch;
  orch::StepRecord step;
  step.id = "s1";
  step.run_id = "batched";
  step.node_name = "a";
  batch.steps.push_back(step);
  batch.pending_writes.push_back(orch::PendingWrite{"batched", 1, "a", Value::object({{"kind", "ok"}})});
  Checkpoint cp;
  cp.id = "cp1";
  cp.run_id = "batched";
  cp.version = 1;
  cp.state = Value::object({{"x", 1}});
  batch.checkpoint = cp;
  RunRecord progress = run;
  progress.state = cp.state;
  progress.checkpoint_count = 1;
  progress.workflow = Value();  // a checkpoint commit leaves the workflow as created
  batch.run = progress;
  for (const char* kind : {"task_start", "updates", "values"}) {
    orch::EventRecord e;
    e.run_id = "batched";
    e.kind = kind;
    batch.events.push_back(e);
  }
  REQUIRE(store->write_batch(batch).ok());
  CHECK(batch.events[0].seq == 2);
  CHECK(batch.events[2].seq == 4);
  CHECK(store->get_step("s1").ok());
  CHECK(store->list_pending_writes("batched")->empty());  // the checkpoint took them
  CHECK(store->latest_checkpoint("batched")->state == Value::object({{"x", 1}}));
  auto stored = store->get_run("batched");
  CHECK(stored->state == Value::object({{"x", 1}}));
  CHECK(stored->checkpoint_count == 1);
  CHECK(stored->workflow == run.workflow);
  auto events = store->list_events("batched", 0, 10);
  REQUIRE(events->size() == 4);
  CHECK((*events)[3].kind == "values");

  // A batch for a run that is gone writes nothing.
  orch::StoreBatch orphan;
  step.id = "s2";
  step.run_id = "gone";
  orphan.steps.push_back(step);
  orch::EventRecord lost;
  lost.run_id = "gone";
  lost.kind = "x";
  orphan.events.push_back(lost);
  CHECK(store->write_batch(orphan).code() == StatusCode::kNotFound);
  CHECK_FALSE(store->get_step("s2").ok());
}

TEST_CASE("a run that ends leaves the checkpoint document cache, with or without a checkpoint", "[sqlite]") {
  // Ended runs kept in the cache would push running runs out of it (each
  // miss then reads the run's checkpoint chain inside the write transaction).
  TempDir dir;
  auto store = open_store(dir.file("cache.db"));
  auto cached = [&] { return *orch::sqlite_cached_documents_for_testing(*store); };
  for (const char* id : {"by-batch", "by-update"}) {
    RunRecord run = make_run(id);
    run.status = RunStatus::kRunning;
    REQUIRE(store->create_run(run).ok());
    orch::StoreBatch progress;
    progress.checkpoint = make_checkpoint(id, 1, Value::object({{"x", 1}}));
    progress.run = run;
    REQUIRE(store->write_batch(progress).ok());
  }
  CHECK(cached() == 2);
  RunRecord ended = *store->get_run("by-batch");
  ended.status = RunStatus::kCompleted;
  orch::StoreBatch last;  // the final record with its last event, no checkpoint
  last.run = ended;
  orch::EventRecord event;
  event.run_id = "by-batch";
  event.kind = "run.completed";
  last.events.push_back(event);
  REQUIRE(store->write_batch(last).ok());
  CHECK(cached() == 1);
  ended = *store->get_run("by-update");
  ended.status = RunStatus::kFailed;
  REQUIRE(store->update_run(ended).ok());
  CHECK(cached() == 0);
}

TEST_CASE("write_batch: concurrent batches commit together, a failing one leaves the others alone", "[sqlite]") {
  TempDir dir;
  auto store = open_store(dir.file("group.db"));
  constexpr int kRuns = 12;
  constexpr int kBatches = 25;
  for (int r = 0; r < kRuns; ++r) REQUIRE(store->create_run(make_run("g" + std::to_string(r))).ok());
  std::atomic<int> failures{0};
  std::atomic<int> orphan_not_found{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < kRuns; ++r) {
    threads.emplace_back([&, r] {
      const std::string id = "g" + std::to_string(r);
      for (int b = 0; b < kBatches; ++b) {
        orch::StoreBatch batch;
        orch::StepRecord step;
        step.id = id + "-s" + std::to_string(b);
        step.run_id = id;
        step.node_name = "n";
        batch.steps.push_back(step);
        batch.checkpoint = make_checkpoint(id, b, Value::object({{"b", b}}));
        RunRecord run = make_run(id);
        run.state = batch.checkpoint->state;
        batch.run = run;
        for (int e = 0; e < 3; ++e) {
          orch::EventRecord ev;
          ev.run_id = id;
          ev.kind = "e";
          ev.data = Value::object({{"b", b}, {"e", e}});
          batch.events.push_back(ev);
        }
        if (!store->write_batch(batch).ok() || batch.events[2].seq != 3 * b + 3) ++failures;
        // Interleave batches for a run that does not exist.
        orch::StoreBatch orphan;
        orch::EventRecord lost;
        lost.run_id = "missing-" + id;
        lost.kind = "x";
        orphan.events.push_back(lost);
        if (store->write_batch(orphan).code() == StatusCode::kNotFound) ++orphan_not_found;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(orphan_not_found == kRuns * kBatches);
  for (int r = 0; r < kRuns; ++r) {
    const std::string id = "g" + std::to_string(r);
    auto events = store->list_events(id, 0, 1000);
    REQUIRE(events.ok());
    REQUIRE(events->size() == 3 * kBatches);
    for (size_t i = 0; i < events->size(); ++i) CHECK((*events)[i].seq == static_cast<int64_t>(i + 1));
    CHECK(store->list_steps(id)->size() == kBatches);
    CHECK(store->get_run(id)->state == Value::object({{"b", kBatches - 1}}));
    // Every checkpoint reads back, also those written again after a failing
    // neighbour made the group start over.
    auto cold = open_store(dir.file("group.db"));
    auto cps = cold->list_checkpoints(id);
    REQUIRE(cps.ok());
    REQUIRE(cps->size() == static_cast<size_t>(kBatches));
    for (int b = 0; b < kBatches; ++b) CHECK((*cps)[static_cast<size_t>(b)].state == Value::object({{"b", b}}));
  }
}

TEST_CASE("a reader that holds the log back does not make every commit checkpoint", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("held.db");
  orch::SqliteStoreOptions options;
  options.wal_checkpoint_pages = 200;
  auto store = open_store(path, options);
  RunRecord run = make_run("r");
  REQUIRE(store->create_run(run).ok());
  // A read transaction on its own connection: no checkpoint can copy the
  // frames written after it began, so the log cannot start over.
  orch::sqlite::Connection reader(path, 1000);
  reader.db().exec("BEGIN");
  CHECK(reader.db().execAndGet("SELECT count(*) FROM runs").getInt() == 1);
  const int commits = 300;  // a few pages of log each: the threshold is passed early on
  for (int v = 0; v < commits; ++v) commit(*store, run, make_checkpoint("r", v, Value::object({{"v", v}})));
  const int64_t checkpoints = *orch::sqlite_wal_checkpoints_for_testing(*store);
  // Past the threshold every commit would ask for one; asked again only per
  // 64 more pages of log, it is a small fraction of that.
  CHECK(checkpoints >= 1);
  CHECK(checkpoints < commits / 5);
  reader.db().exec("COMMIT");
}

TEST_CASE("writes share one pooled connection, a second writer waits for it", "[sqlite]") {
  // SQLite empties a connection's page cache when another connection has
  // committed; keeping every write on one connection keeps its cache warm.
  TempDir dir;
  orch::sqlite::ConnectionPool pool(dir.file("pool.db"), 1000, 4, /*single=*/false, nullptr);
  orch::sqlite::Connection* writer = nullptr;
  std::atomic<orch::sqlite::Connection*> second_got{nullptr};
  std::thread second;
  {
    auto first = pool.acquire_writer();
    writer = &*first;
    second = std::thread([&] {
      auto lease = pool.acquire_writer();
      second_got = &*lease;
    });
    auto reader = pool.acquire();
    CHECK(&*reader != writer);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(second_got.load() == nullptr);  // still waiting: the writer connection is out
  }
  second.join();
  CHECK(second_got.load() == writer);
  auto again = pool.acquire_writer();
  CHECK(&*again == writer);
  auto reader = pool.acquire();  // readers never get the writer connection
  CHECK(&*reader != writer);
}

namespace {

// The page size of the database file at `path`.
int page_size_of(const std::string& path) {
  orch::sqlite::Connection conn(path, 1000);
  return conn.db().execAndGet("PRAGMA page_size").getInt();
}

// The size of a log holding `pages_4k` pages of 4 KiB worth of frames of the
// file's own page size (a frame is a page plus a 24-byte header, after a
// 32-byte log header): where wal_checkpoint_pages puts the threshold.
uintmax_t log_bytes_at(const std::string& path, int pages_4k) {
  const uintmax_t page = static_cast<uintmax_t>(page_size_of(path));
  return 32 + static_cast<uintmax_t>(pages_4k) * 4096 / page * (page + 24);
}

}  // namespace

TEST_CASE("a new file gets the page size asked for, an existing file keeps its own", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("pages.db");
  {
    auto store = open_store(path);  // the default
    CHECK(page_size_of(path) == 2048);
  }
  const std::string old_path = dir.file("old.db");
  {
    orch::SqliteStoreOptions options;
    options.page_size = 4096;
    auto store = open_store(old_path, options);
    REQUIRE(store->create_run(make_run("kept")).ok());
  }
  // Reopened with the default: still 4096 (SQLite cannot change it in WAL
  // mode), and everything in it is read and written as before.
  auto store = open_store(old_path);
  CHECK(page_size_of(old_path) == 4096);
  auto run = store->get_run("kept");
  REQUIRE(run.ok());
  RunRecord more = make_run("more");
  REQUIRE(store->create_run(more).ok());
  commit(*store, more, make_checkpoint("more", 1, Value::object({{"blob", std::string(9000, 'x')}})));
  auto latest = store->latest_checkpoint("more");
  REQUIRE(latest.ok());
  CHECK(latest->state == Value::object({{"blob", std::string(9000, 'x')}}));
}

TEST_CASE("two checkpoints in one batch chain right with a cold document cache", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("pair.db");
  RunRecord run = make_run("r");
  Value state = Value::object({{"items", Value::array()}});
  {
    auto store = open_store(path);
    REQUIRE(store->create_run(run).ok());
    for (int v = 0; v < 3; ++v) {
      state = grown_state(state, v);
      commit(*store, run, make_checkpoint("r", v, state));
    }
  }
  // Reopened: nothing cached, so neither checkpoint can be encoded before
  // the writer lock; the later one then follows the earlier once it is written.
  auto store = open_store(path);
  orch::StoreBatch batch;
  const Value earlier_state = grown_state(state, 3);
  const Value later_state = grown_state(earlier_state, 4);
  batch.earlier_checkpoint = make_checkpoint("r", 3, earlier_state);
  batch.checkpoint = make_checkpoint("r", 4, later_state);
  run.state = later_state;
  run.checkpoint_count = 5;
  batch.run = run;
  REQUIRE(store->write_batch(batch).ok());
  for (auto reader : {store, open_store(path)}) {
    auto all = reader->list_checkpoints("r");
    REQUIRE(all.ok());
    REQUIRE(all->size() == 5);
    require_same_text(earlier_state, (*all)[3].state);
    require_same_text(later_state, (*all)[4].state);
    CHECK((*all)[4].parent_id == "r-cp3");
    auto latest = reader->latest_checkpoint("r");
    REQUIRE(latest.ok());
    require_same_text(later_state, latest->state);
    auto got = reader->get_run("r");
    REQUIRE(got.ok());
    require_same_text(later_state, got->state);
  }
}

TEST_CASE("a page size that SQLite cannot use is refused", "[sqlite]") {
  TempDir dir;
  for (int page_size : {0, -4096, 256, 1000, 3072, 131072}) {
    orch::SqliteStoreOptions options;
    options.page_size = page_size;
    auto store = orch::open_sqlite_store(dir.file("bad.db"), options);
    REQUIRE_FALSE(store.ok());
    CHECK(store.status().code() == orch::StatusCode::kInvalidArgument);
    CHECK(store.status().message().find("page_size") != std::string::npos);
  }
}

TEST_CASE("the write-ahead log goes back into the database once it holds wal_checkpoint_pages pages", "[sqlite]") {
  TempDir dir;
  auto size_of = [](const std::string& path) {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    return ec ? uintmax_t{0} : size;
  };
  // The threshold counts pages of 4 KiB whatever the file's page size.
  for (int page_size : {1024, 2048, 4096})
  for (int pages : {50, 100000}) {
    INFO("page_size " << page_size << ", wal_checkpoint_pages " << pages);
    const std::string path = dir.file("wal-" + std::to_string(page_size) + "-" + std::to_string(pages) + ".db");
    orch::SqliteStoreOptions options;
    options.wal_checkpoint_pages = pages;
    options.page_size = page_size;
    auto store = open_store(path, options);
    REQUIRE(page_size_of(path) == page_size);
    const uintmax_t initial = size_of(path);
    RunRecord run = make_run("r");
    REQUIRE(store->create_run(run).ok());
    // States that differ completely, until the log holds `pages` pages (or
    // 100 commits, ~400 KB): past the threshold, yet far below the four times
    // it at which the committing thread would copy the log back itself.
    const uintmax_t threshold_bytes = log_bytes_at(path, pages);
    for (int v = 0; v < 100 && size_of(path + "-wal") < threshold_bytes; ++v) {
      commit(*store, run, make_checkpoint("r", v, Value::object({{"blob", std::string(4000, static_cast<char>('a' + v % 26))}})));
    }
    if (pages == 50) {
      REQUIRE(size_of(path + "-wal") < 2 * threshold_bytes);
      // The checkpoint runs on the store's own thread: give it a moment.
      // The blobs' pages (several per commit) land in the file.
      const uintmax_t copied = initial + 16 * static_cast<uintmax_t>(page_size);
      for (int i = 0; i < 500 && size_of(path) < copied; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      CHECK(size_of(path) >= copied);
    } else {
      CHECK(size_of(path) == initial);  // all of it still in the log
    }
  }
}

namespace {

// The integer `sql` reads on a connection of its own to the file (not the
// store's): what is really in the file.
int64_t count_in_file(const std::string& path, const std::string& sql) {
  orch::sqlite::Connection conn(path, 1000);
  return conn.db().execAndGet(sql).getInt64();
}

Value workflow_of_version(int version) {
  return Value::object({{"id", "wf"},
                        {"version", version},
                        {"nodes", Value::object({{"a", Value::object({{"type", "transform"}})}})},
                        {"edges", Value::array()}});
}

}  // namespace

TEST_CASE("a workflow definition is stored once for all runs of one version", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("defs.db");
  auto store = open_store(path);
  for (int i = 0; i < 20; ++i) {
    RunRecord run = make_run("v1-" + std::to_string(i));
    run.workflow_id = "wf";
    run.workflow = workflow_of_version(1);
    REQUIRE(store->create_run(run).ok());
  }
  for (int i = 0; i < 3; ++i) {
    RunRecord run = make_run("v2-" + std::to_string(i));
    run.workflow_id = "wf";
    run.workflow = workflow_of_version(2);
    REQUIRE(store->create_run(run).ok());
  }
  CHECK(count_in_file(path, "SELECT count(*) FROM definitions") == 2);
  CHECK(count_in_file(path, "SELECT count(*) FROM runs WHERE workflow <> ''") == 0);
  // Each run reads back its own version, exactly.
  CHECK(store->get_run("v1-7")->workflow.to_json() == workflow_of_version(1).to_json());
  CHECK(store->get_run("v2-1")->workflow.to_json() == workflow_of_version(2).to_json());
  auto listed = store->list_runs({});
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 23);
  CHECK(listed->front().workflow.to_json() == workflow_of_version(2).to_json());
  CHECK(listed->back().workflow.to_json() == workflow_of_version(1).to_json());

  // Updating a run (the engine's end-of-run write) keeps sharing the row.
  RunRecord ended = *store->get_run("v1-3");
  ended.status = RunStatus::kCompleted;
  REQUIRE(store->update_run(ended).ok());
  CHECK(count_in_file(path, "SELECT count(*) FROM definitions") == 2);
  CHECK(store->get_run("v1-3")->workflow.to_json() == workflow_of_version(1).to_json());

  // The last run of a version takes its definition along.
  for (int i = 0; i < 3; ++i) REQUIRE(store->delete_run("v2-" + std::to_string(i)).ok());
  CHECK(count_in_file(path, "SELECT count(*) FROM definitions") == 1);
  REQUIRE(store->delete_run("v1-0").ok());
  CHECK(count_in_file(path, "SELECT count(*) FROM definitions") == 1);
  CHECK(store->get_run("v1-1")->workflow.to_json() == workflow_of_version(1).to_json());
}

TEST_CASE("events rebuilt from their checkpoint read back as written", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("events.db");
  auto store = open_unbatched_store(path);
  RunRecord run = make_run("r");
  REQUIRE(store->create_run(run).ok());
  Value state = Value::object({{"items", Value::array()}});
  std::vector<std::string> expected;  // each event's data, in seq order
  for (int v = 0; v < 4; ++v) {
    state = grown_state(state, v);
    orch::StoreBatch batch;
    batch.checkpoint = make_checkpoint("r", v, state);
    run.state = state;
    run.checkpoint_count = v + 1;
    batch.run = run;
    auto add = [&](const std::string& kind, Value data) {
      orch::EventRecord e;
      e.run_id = "r";
      e.kind = kind;
      e.data = std::move(data);
      e.created_at_ms = 100 + v;
      expected.push_back(e.data.to_json());
      batch.events.push_back(std::move(e));
    };
    const Checkpoint& cp = *batch.checkpoint;
    // The engine's shapes, stored by reference...
    add("checkpoint.created", Value::object({{"checkpoint_id", cp.id}, {"version", static_cast<long long>(cp.version)},
                                             {"step_id", cp.step_id}}));
    add("values", Value::object({{"step", cp.step_id}, {"state", cp.state}}));
    add("values", Value::object({{"step", "other"}, {"state", cp.state}}));
    // ...and near misses, stored whole: other key order, another step, a
    // state that only looks the same.
    add("checkpoint.created", Value::object({{"version", static_cast<long long>(cp.version)},
                                             {"checkpoint_id", cp.id}, {"step_id", cp.step_id}}));
    add("checkpoint.created", Value::object({{"checkpoint_id", cp.id}, {"version", static_cast<long long>(cp.version)},
                                             {"step_id", "elsewhere"}}));
    add("values", Value::object({{"step", cp.step_id}, {"state", *orch::parse_json(cp.state.to_json())}}));
    add("my.own.kind", Value::object({{"n", v}}));
    REQUIRE(store->write_batch(batch).ok());
  }
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE form <> 0") == 12);
  // The engine's kinds are stored as one-byte codes, other kinds by name.
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE typeof(kind) = 'integer'") == 24);
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE form IN (2, 3) AND data = ''") == 8);
  auto check_events = [&] {
    auto events = store->list_events("r", 0, 1000);
    REQUIRE(events.ok());
    REQUIRE(events->size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      CHECK((*events)[i].seq == static_cast<int64_t>(i + 1));
      CHECK((*events)[i].data.to_json() == expected[i]);
    }
    // A page that starts mid-way reads the same.
    auto tail = store->list_events("r", 7, 3);
    REQUIRE(tail.ok());
    REQUIRE(tail->size() == 3);
    CHECK((*tail)[0].data.to_json() == expected[7]);
    CHECK((*events)[6].kind == "my.own.kind");
    CHECK((*events)[7].kind == "checkpoint.created");
    CHECK((*events)[8].kind == "values");
  };
  check_events();
  // Replaying from version 1 drops checkpoints 2 and 3: their events are
  // stored whole first, and read back the same.
  REQUIRE(store->truncate_checkpoints("r", 1).ok());
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE form <> 0") == 6);
  check_events();
  // A damaged reference is an error, not a crash.
  REQUIRE(orch::sqlite_execute_for_testing(*store, "UPDATE events SET checkpoint_seq = 99 WHERE form <> 0").ok());
  auto damaged = store->list_events("r", 0, 1000);
  REQUIRE_FALSE(damaged.ok());
  CHECK(damaged.status().code() == StatusCode::kInternal);
  check_damage_fails(*store, "UPDATE events SET form = 9 WHERE seq = 1", 0, 1);
  check_damage_fails(*store, "UPDATE events SET kind = 250 WHERE seq = 7", 6, 1);
}

TEST_CASE("a checkpoint's parent reads back whether or not it is the row before", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("parents.db");
  auto store = open_store(path);
  RunRecord run = make_run("r");
  REQUIRE(store->create_run(run).ok());
  std::vector<Checkpoint> written;
  for (int v = 0; v < 4; ++v) {
    written.push_back(make_checkpoint("r", v, Value::object({{"v", v}})));
    if (v == 3) written.back().parent_id = "r-cp1";  // a replay's first checkpoint
    commit(*store, run, written.back());
  }
  // Only the unusual parent is stored (the first checkpoint's is '').
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE parent_id IS NOT NULL") == 2);
  auto listed = store->list_checkpoints("r");
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK((*listed)[i].parent_id == written[i].parent_id);
    CHECK((*listed)[i].run_id == "r");
  }
  CHECK(store->get_checkpoint("r-cp2")->parent_id == "r-cp1");
  CHECK(store->latest_checkpoint("r")->parent_id == "r-cp1");
}

TEST_CASE("a schema 6 file migrates to 7 with its runs, events and checkpoints", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("v6.db");
  std::vector<Checkpoint> expected;
  {
    auto store = open_unbatched_store(path);
    RunRecord run = make_run("a");
    run.workflow = workflow_of_version(1);
    REQUIRE(store->create_run(run).ok());
    RunRecord b = make_run("b");
    b.workflow = workflow_of_version(1);
    REQUIRE(store->create_run(b).ok());
    RunRecord c = make_run("c");
    c.workflow = workflow_of_version(2);
    REQUIRE(store->create_run(c).ok());
    Value state = Value::object({{"items", Value::array()}});
    for (int v = 0; v < 3; ++v) {
      state = grown_state(state, v);
      expected.push_back(make_checkpoint("a", v, state));
      commit(*store, run, expected.back());
    }
    // Back to schema 6, then rows as schema 6 wrote them: a "values" event
    // that names its checkpoint (by id) for its state, a whole one, and an
    // event of a run that no longer exists.
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6 + R"sql(
INSERT INTO events (run_pk, run_id, seq, kind, data, created_at_ms, state_checkpoint_id) VALUES
  ((SELECT pk FROM runs WHERE id = 'a'), 'a', 1, 'run.started', '{"input":{}}', 10, ''),
  ((SELECT pk FROM runs WHERE id = 'a'), 'a', 2, 'values', '{"step":"node1"}', 11, 'a-cp1'),
  (999, 'gone', 1, 'run.started', '{}', 12, '');
UPDATE runs SET last_event_seq = 2 WHERE id = 'a';
)sql").ok());
  }
  CHECK(count_in_file(path, "PRAGMA user_version") == 6);
  auto store = open_store(path);
  CHECK(count_in_file(path, "PRAGMA user_version") == orch::sqlite_store_schema_version());
  CHECK(count_in_file(path, "SELECT count(*) FROM definitions") == 2);
  CHECK(store->get_run("a")->workflow.to_json() == workflow_of_version(1).to_json());
  CHECK(store->get_run("b")->workflow.to_json() == workflow_of_version(1).to_json());
  CHECK(store->get_run("c")->workflow.to_json() == workflow_of_version(2).to_json());
  auto checkpoints = store->list_checkpoints("a");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    require_same_text(expected[i].state, (*checkpoints)[i].state);
    CHECK((*checkpoints)[i].parent_id == expected[i].parent_id);
  }
  auto events = store->list_events("a", 0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 2);
  CHECK((*events)[0].data.to_json() == R"({"input":{}})");
  CHECK((*events)[1].data.to_json() ==
        Value::object({{"step", "node1"}, {"state", expected[1].state}}).to_json());
  CHECK(count_in_file(path, "SELECT count(*) FROM events") == 2);  // the orphan is gone
  // And the run goes on.
  orch::EventRecord next;
  next.run_id = "a";
  next.kind = "after";
  CHECK(*store->append_event(next) == 3);
  RunRecord a = *store->get_run("a");
  commit(*store, a, make_checkpoint("a", 3, Value::object({{"v", 3}})));
  CHECK(store->latest_checkpoint("a")->parent_id == "a-cp2");
}

TEST_CASE("the log file shrinks back to its limit once it starts over", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("shrink.db");
  auto size_of = [](const std::string& file) {
    std::error_code ec;
    auto size = std::filesystem::file_size(file, ec);
    return ec ? uintmax_t{0} : size;
  };
  orch::SqliteStoreOptions options;
  options.wal_checkpoint_pages = 50;
  auto store = open_store(path, options);
  const uintmax_t limit = log_bytes_at(path, 50);
  const uintmax_t frame = static_cast<uintmax_t>(page_size_of(path)) + 24;
  RunRecord run = make_run("r");
  REQUIRE(store->create_run(run).ok());
  auto write_some = [&](int from, int count) {
    for (int v = from; v < from + count; ++v) {
      commit(*store, run, make_checkpoint("r", v, Value::object({{"blob", std::string(4000, static_cast<char>('a' + v % 26))}})));
    }
  };
  {
    // A reader holds the log: it cannot start over and grows far past its limit.
    orch::sqlite::Connection reader(path, 1000);
    reader.db().exec("BEGIN");
    CHECK(reader.db().execAndGet("SELECT count(*) FROM runs").getInt() == 1);
    write_some(0, 300);
    CHECK(size_of(path + "-wal") > 3 * limit);
    reader.db().exec("COMMIT");
  }
  // Once the reader is gone the checkpointer finishes the copy and the log
  // starts over; its file is cut back to the limit (plus the commit that
  // restarted it). The thread works on its own: commits go on until then.
  int v = 300;
  for (int i = 0; i < 2000 && size_of(path + "-wal") > limit + 8 * frame; ++i) {
    write_some(v++, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  CHECK(size_of(path + "-wal") <= limit + 8 * frame);
  require_same_text(Value::object({{"blob", std::string(4000, static_cast<char>('a' + (v - 1) % 26))}}),
                    store->latest_checkpoint("r")->state);
}

namespace {

// Steps `ids` of run "r", in that order, each found by its id.
void step_ids_ok(Store& store, const std::vector<std::string>& ids) {
  auto steps = store.list_steps("r");
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    CHECK((*steps)[i].id == ids[i]);
    CHECK((*steps)[i].run_id == "r");
    auto one = store.get_step(ids[i]);
    REQUIRE(one.ok());
    CHECK(one->id == ids[i]);
    CHECK(one->run_id == "r");
  }
}

}  // namespace

TEST_CASE("checkpoint and step ids that are UUIDs take 16 bytes and read back the same", "[sqlite]") {
  TempDir dir;
  const std::string path = dir.file("uuids.db");
  const std::vector<std::string> ids = {"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "00000000-0000-4000-8000-000000000001",
                                        "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",  // upper case: kept as text
                                        "not-a-uuid"};
  {
    auto store = open_unbatched_store(path);
    RunRecord run = make_run("r");
    REQUIRE(store->create_run(run).ok());
    for (size_t v = 0; v < ids.size(); ++v) {
      Checkpoint cp = make_checkpoint("r", static_cast<int64_t>(v), Value::object({{"v", static_cast<int>(v)}}));
      cp.id = ids[v];
      cp.parent_id = v == 0 ? "" : ids[v - 1];
      commit(*store, run, cp);
    }
    CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE typeof(id) = 'blob' AND length(id) = 16") == 2);
    for (const std::string& id : ids) {
      orch::StepRecord step;
      step.id = id;
      step.run_id = "r";
      step.node_name = "n";
      REQUIRE(store->put_step(step).ok());
    }
    step_ids_ok(*store, ids);
    CHECK(count_in_file(path, "SELECT count(*) FROM steps WHERE typeof(id) = 'blob' AND length(id) = 16") == 2);
    CHECK(count_in_file(path, "SELECT count(*) FROM steps WHERE run_id <> ''") == 0);
    for (size_t v = 0; v < ids.size(); ++v) {
      auto cp = store->get_checkpoint(ids[v]);
      REQUIRE(cp.ok());
      CHECK(cp->id == ids[v]);
      CHECK(cp->parent_id == (v == 0 ? "" : ids[v - 1]));
      CHECK(cp->state["v"].as_int() == static_cast<int64_t>(v));
    }
    CHECK(store->get_checkpoint("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f1").status().code() == StatusCode::kNotFound);
    // Back to schema 6, where ids were text.
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6).ok());
    CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE typeof(id) = 'text'") == 4);
  }
  // The migration compacts the text UUIDs: found by id as before.
  auto store = open_store(path);
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE typeof(id) = 'blob'") == 2);
  auto listed = store->list_checkpoints("r");
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == ids.size());
  for (size_t v = 0; v < ids.size(); ++v) {
    CHECK((*listed)[v].id == ids[v]);
    CHECK((*listed)[v].parent_id == (v == 0 ? "" : ids[v - 1]));
    CHECK(store->get_checkpoint(ids[v])->id == ids[v]);
  }
  CHECK(store->latest_checkpoint("r")->id == "not-a-uuid");
  step_ids_ok(*store, ids);
  CHECK(count_in_file(path, "SELECT count(*) FROM steps WHERE typeof(id) = 'blob'") == 2);
}

TEST_CASE("a small state's checkpoints are deltas after the first snapshot", "[sqlite][size]") {
  TempDir dir;
  const std::string path = dir.file("small.db");
  auto store = open_store(path);
  RunRecord run = make_run("r");
  REQUIRE(store->create_run(run).ok());
  std::vector<Checkpoint> written;
  for (int v = 0; v < 8; ++v) {
    // Each delta is about as long as the whole document.
    written.push_back(make_checkpoint("r", v, Value::object({{"n", v}, {"word", std::string(1, static_cast<char>('a' + v))}})));
    commit(*store, run, written.back());
  }
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE kind = 's'") == 1);  // 'snapshot' (schema 10)
  auto listed = store->list_checkpoints("r");
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == written.size());
  for (size_t i = 0; i < written.size(); ++i) require_same_text(written[i].state, (*listed)[i].state);

  // Without the floor (PostgreSQL's choice) such a delta is a snapshot, as before.
  namespace codec = orch::checkpoint_codec;
  const Value first = orch::checkpoint_codec::checkpoint_document(written[0]);
  const Value second = orch::checkpoint_codec::checkpoint_document(written[1]);
  codec::EncodedCheckpoint base = codec::encode_checkpoint("a", first, nullptr, nullptr, 512);
  CHECK(base.snapshot);
  codec::EncodedCheckpoint next = codec::encode_checkpoint("b", second, &base.link, &first, 512);
  codec::EncodedCheckpoint next_with_floor = codec::encode_checkpoint("b", second, &base.link, &first, 512, 2048);
  CHECK_FALSE(next_with_floor.snapshot);
  CHECK(next.snapshot == (static_cast<int64_t>(next_with_floor.body.size()) > base.link.base_bytes));
}

TEST_CASE("a schema 6 file's leased runs are at lease epoch 1 after the upgrade, and fenced from then on", "[sqlite][lease]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  {
    auto store = open_unbatched_store(path);
    REQUIRE(store->create_claimed_run(make_run("leased"), "engine-a", 600000).ok());
    REQUIRE(store->create_run(make_run("free")).ok());
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema6).ok());
  }
  auto store = open_store(path);
  CHECK(store->check_lease("leased", "engine-a", 1).ok());
  CHECK(orch::lease_lost(store->check_lease("leased", "engine-a", 2)));
  auto epoch = store->claim_run_lease("free", "engine-b", 600000);
  REQUIRE(epoch.ok());
  CHECK(*epoch == 1);
  REQUIRE(store->claim_run_lease("leased", "engine-a", 0).ok());
  auto taken = store->claim_run_lease("leased", "engine-b", 600000);
  REQUIRE(taken.ok());
  CHECK(*taken == 2);
}

namespace {

// Values of every type and the shapes the packed form treats apart.
std::vector<Value> packable_values() {
  return {Value(),
          Value(true),
          Value(false),
          Value(0),
          Value(63),
          Value(64),
          Value(-1),
          Value(static_cast<long long>(INT64_MIN)),
          Value(static_cast<long long>(INT64_MAX)),
          Value(1.0),
          Value(-0.5e300),
          Value(""),
          Value(std::string(31, 'x')),
          Value(std::string(32, 'y')),
          Value(std::string(100000, 'z')),
          Value("h\xc3\xa9llo \"quoted\" \\ \n"),
          Value("3ef53a8e-3c45-4653-9a39-048daeec1bff"),
          Value("3EF53A8E-3C45-4653-9A39-048DAEEC1BFF"),  // upper case: not a packed UUID
          Value("3ef53a8e-3c45-4653-9a39-048daeec1bfg"),
          Value("id"),
          Value::array(),
          Value::object(),
          Value::object({{"id", "3ef53a8e-3c45-4653-9a39-048daeec1bff"}, {"name", "greet"}, {"type", "transform"}}),
          Value::object({{"z", 1}, {"a", 2.5}, {"state", Value::object({{"log", Value::array({"a", 1, nullptr})}})}}),
          Value::object({{std::string(40, 'k'), Value::array({Value::array({Value::array()})})}})};
}

}  // namespace

TEST_CASE("packed values read back exactly: types, key order, strings", "[sqlite][packed]") {
  for (const Value& v : packable_values()) {
    const std::string packed = orch::sqlite::pack_value(v);
    REQUIRE_FALSE(packed.empty());
    auto back = orch::sqlite::unpack_value(packed);
    REQUIRE(back.ok());
    CHECK(back->type() == v.type());
    CHECK(back->to_json() == v.to_json());
  }
  // The engine's task_start event: 79 bytes of JSON text.
  const Value task_start =
      Value::object({{"id", "3ef53a8e-3c45-4653-9a39-048daeec1bff"}, {"name", "greet"}, {"type", "transform"}});
  CHECK(orch::sqlite::pack_value(task_start).size() <= 30);
}

TEST_CASE("packed values: hostile bytes give errors, not crashes", "[sqlite][packed][hardening]") {
  // Every proper prefix of a packed value is truncated.
  const std::string packed = orch::sqlite::pack_value(packable_values()[23]);
  for (size_t n = 0; n < packed.size(); ++n) CHECK_FALSE(orch::sqlite::unpack_value(packed.substr(0, n)).ok());
  CHECK_FALSE(orch::sqlite::unpack_value(packed + "x").ok());  // bytes after the end
  // A count far beyond the bytes there are allocates nothing.
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x06\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10)).ok());
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x05\xff\xff\xff\xff\x0f", 6)).ok());
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x0a", 1)).ok());  // unknown tag
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\xff", 1)).ok());  // unknown dictionary string
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x07\x01\x02\x00", 4)).ok());  // a key that is no string
  // Nesting: as deep as a JSON document may be, no deeper.
  CHECK_FALSE(orch::sqlite::unpack_value(std::string(100000, '\x06') ).ok());
  Value deep = Value::array();
  for (int i = 0; i < 600; ++i) deep = Value::array({deep});
  CHECK(orch::sqlite::pack_value(deep).empty());
  // Random bytes: an error or a value, never a crash.
  uint32_t x = 12345;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes(1 + round % 40, '\0');
    for (char& c : bytes) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    (void)orch::sqlite::unpack_value(bytes);
  }
}

TEST_CASE("events are stored packed and read back as written", "[sqlite][packed]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  auto store = open_store(path);
  REQUIRE(store->create_run(make_run("r")).ok());
  Value deep = Value::array();
  for (int i = 0; i < 500; ++i) deep = Value::array({deep});
  std::vector<Value> data = packable_values();
  data.push_back(deep);
  for (const Value& d : data) {
    orch::EventRecord e;
    e.run_id = "r";
    e.kind = "task_start";
    e.data = d;
    e.created_at_ms = 1796595487926;
    REQUIRE(store->append_event(e).ok());
  }
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE typeof(data) = 'blob'") ==
        static_cast<int64_t>(data.size()));
  auto events = store->list_events("r", 0, 1000);
  REQUIRE(events.ok());
  REQUIRE(events->size() == data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    CHECK((*events)[i].data.to_json() == data[i].to_json());
    CHECK((*events)[i].created_at_ms == 1796595487926);
  }
  // A damaged packed row is an error naming the event, not a crash.
  REQUIRE(orch::sqlite_execute_for_testing(*store, "UPDATE events SET data = x'0605' WHERE seq = 3").ok());
  auto damaged = store->list_events("r", 2, 1);
  REQUIRE_FALSE(damaged.ok());
  CHECK(damaged.status().code() == StatusCode::kInternal);
  CHECK(damaged.status().message().find("event 3") != std::string::npos);
}

TEST_CASE("a schema 8 file's events are packed by the upgrade and read back the same", "[sqlite][packed]") {
  TempDir dir;
  const std::string path = dir.file("v8.db");
  std::vector<std::string> expected;
  std::vector<Value> states;
  std::vector<StepRecord> steps;
  {
    auto store = open_unbatched_store(path);
    RunRecord run = make_run("a");
    REQUIRE(store->create_run(run).ok());
    Value state = Value::object({{"items", Value::array()}});
    for (int v = 0; v < 3; ++v) {
      state = grown_state(state, v);
      states.push_back(state);
      orch::StoreBatch batch;
      batch.checkpoint = make_checkpoint("a", v, state);
      run.state = state;
      run.checkpoint_count = v + 1;
      batch.run = run;
      const Checkpoint& cp = *batch.checkpoint;
      for (Value d : {Value::object({{"id", "06b40e31-049f-41f3-a362-919ecaeed3f8"}, {"name", "again"}, {"ok", true},
                                     {"duration_ms", 0}}),
                      Value::object({{"step", cp.step_id}, {"state", cp.state}}),            // by reference
                      Value::object({{"step", "x"}, {"n", 1.5}, {"state", cp.state}})}) {  // without its state
        orch::EventRecord e;
        e.run_id = "a";
        e.kind = "values";
        e.data = d;
        e.created_at_ms = 100 + v;
        expected.push_back(d.to_json());
        batch.events.push_back(std::move(e));
      }
      REQUIRE(store->write_batch(batch).ok());
    }
    // Steps: every status, times before, at and after their creation, unset.
    int i = 0;
    for (StepStatus status : {StepStatus::kPending, StepStatus::kReady, StepStatus::kRunning, StepStatus::kCompleted,
                              StepStatus::kFailed, StepStatus::kSkipped, StepStatus::kInterrupted}) {
      StepRecord step;
      step.id = "0000000" + std::to_string(i) + "-3c45-4653-9a39-048daeec1bff";
      step.run_id = "a";
      step.node_name = "n";
      step.type = "transform";
      step.status = status;
      step.input = Value::object({{"i", i}});
      step.output = i % 2 == 0 ? Value() : Value::object({{"route", "more"}});
      step.created_at_ms = 1796595487622;
      step.started_at_ms = i == 0 ? 0 : 1796595487622 + (i - 3);
      step.ended_at_ms = i < 2 ? 0 : 1796595487926;
      steps.push_back(step);
      REQUIRE(store->put_step(step).ok());
      ++i;
    }
    REQUIRE(orch::sqlite_execute_for_testing(*store, kBackToSchema8 + std::string(R"sql(
INSERT INTO events (run_pk, seq, kind, data, created_at_ms) VALUES
  ((SELECT pk FROM runs WHERE id = 'a'), 10, 'custom', '{"not json', 200);
UPDATE runs SET last_event_seq = 10 WHERE id = 'a';
)sql")).ok());
  }
  CHECK(count_in_file(path, "PRAGMA user_version") == 8);
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE typeof(data) = 'blob'") == 0);
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE typeof(body) = 'blob'") == 0);
  CHECK(count_in_file(path, "SELECT count(*) FROM steps WHERE status = 'completed' AND ended_at_ms = 1796595487926") == 1);
  auto store = open_store(path);
  CHECK(count_in_file(path, "SELECT count(*) FROM steps WHERE length(status) = 1 AND typeof(output) = 'blob'") == 7);
  auto read_steps = store->list_steps("a");
  REQUIRE(read_steps.ok());
  REQUIRE(read_steps->size() == steps.size());
  for (size_t k = 0; k < steps.size(); ++k) {
    const StepRecord& got = (*read_steps)[k];
    CHECK(got.id == steps[k].id);
    CHECK(got.status == steps[k].status);
    CHECK(got.input.to_json() == steps[k].input.to_json());
    CHECK(got.output.to_json() == steps[k].output.to_json());
    CHECK(got.created_at_ms == steps[k].created_at_ms);
    CHECK(got.started_at_ms == steps[k].started_at_ms);
    CHECK(got.ended_at_ms == steps[k].ended_at_ms);
  }
  CHECK(count_in_file(path, "PRAGMA user_version") == orch::sqlite_store_schema_version());
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE typeof(body) = 'blob'") == 3);
  auto checkpoints = store->list_checkpoints("a");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == 3);
  CHECK((*checkpoints)[2].state.to_json() == states.back().to_json());
  CHECK(store->latest_checkpoint("a")->state.to_json() == states.back().to_json());
  // Whole events and those stored without their state are packed; the
  // malformed row stays as it was.
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE typeof(data) = 'blob'") == 6);
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE typeof(data) = 'text' AND data <> ''") == 1);
  auto events = store->list_events("a", 0, 9);
  REQUIRE(events.ok());
  REQUIRE(events->size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK((*events)[i].data.to_json() == expected[i]);
    CHECK((*events)[i].created_at_ms == static_cast<int64_t>(100 + i / 3));
  }
  // Times are stored relative to the run's first event.
  CHECK(count_in_file(path, "SELECT max(created_at_ms) FROM events WHERE seq > 1") == 100);
  CHECK(store->list_events("a", 9, 1).status().code() == StatusCode::kInternal);
  // A damaged packed body is an error naming the run and seq, not a crash.
  REQUIRE(orch::sqlite_execute_for_testing(*store, "UPDATE checkpoints SET body = x'07ff' WHERE seq = 1").ok());
  auto damaged = store->list_checkpoints("a");
  REQUIRE_FALSE(damaged.ok());
  CHECK(damaged.status().code() == StatusCode::kInternal);
  CHECK(damaged.status().message().find("corrupt at seq 1") != std::string::npos);
}

TEST_CASE("event times read back exactly, stored relative to the run's first event", "[sqlite][packed]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  auto store = open_store(path);
  REQUIRE(store->create_run(make_run("r")).ok());
  // Forwards, backwards, zero, far apart: through append_event and write_batch.
  const std::vector<int64_t> times = {1796595487622, 1796595487926, 1796595487000, 0, 1796595487622,
                                      INT64_MAX, -5, 1796595499999};
  for (size_t i = 0; i < 4; ++i) {
    orch::EventRecord e;
    e.run_id = "r";
    e.kind = "custom";
    e.created_at_ms = times[i];
    REQUIRE(store->append_event(e).ok());
  }
  orch::StoreBatch batch;
  for (size_t i = 4; i < times.size(); ++i) {
    orch::EventRecord e;
    e.run_id = "r";
    e.kind = "custom";
    e.created_at_ms = times[i];
    batch.events.push_back(e);
  }
  REQUIRE(store->write_batch(batch).ok());
  CHECK(count_in_file(path, "SELECT created_at_ms FROM events WHERE seq = 2") == 304);
  auto events = store->list_events("r", 0, 100);
  REQUIRE(events.ok());
  REQUIRE(events->size() == times.size());
  for (size_t i = 0; i < times.size(); ++i) CHECK((*events)[i].created_at_ms == times[i]);
  auto tail = store->list_events("r", 5, 2);  // a page that starts after the first event
  REQUIRE(tail.ok());
  REQUIRE(tail->size() == 2);
  CHECK((*tail)[0].created_at_ms == times[5]);
  CHECK((*tail)[1].created_at_ms == times[6]);
  // Another run's events start from their own first event.
  REQUIRE(store->create_run(make_run("s")).ok());
  orch::EventRecord first;
  first.run_id = "s";
  first.kind = "custom";
  first.created_at_ms = 42;
  REQUIRE(store->append_event(first).ok());
  first.created_at_ms = 43;
  REQUIRE(store->append_event(first).ok());
  CHECK(store->list_events("s", 1, 1)->front().created_at_ms == 43);
}

TEST_CASE("packed values name a string repeated in one packing by its place, and read back the same", "[sqlite][packed]") {
  const std::string id = "3ef53a8e-3c45-4653-9a39-048daeec1bff";
  const Value task_result = Value::object({{"id", id}, {"name", "greet"}, {"output", Value::object({{"by", "greet"}})},
                                           {"again", id}, {"abc", "abc"}, {"abc2", "abc"}});
  const std::string packed = orch::sqlite::pack_value(task_result);
  // The UUID once in 17 bytes and once in 2, "greet" once in 6 and once in 2;
  // 3 bytes are too short to repeat. Object 2, "id" 1 + 17, "name" 1 + 6,
  // "output" 1 + {2, "by" 3, 2}, "again" 6 + 2, "abc" 4 + 4, "abc2" 5 + 4.
  CHECK(packed.size() == 60);
  auto back = orch::sqlite::unpack_value(packed);
  REQUIRE(back.ok());
  CHECK(back->to_json() == task_result.to_json());
  // Across the values of one packing, in order.
  std::string out;
  orch::sqlite::ValuePacker packer(&out);
  const Value first = Value::object({{"id", id}, {"name", "greet"}});
  const Value second = Value::object({{"step_id", id}, {"node", "greet"}});
  REQUIRE(packer.pack(first));
  const size_t first_size = out.size();
  REQUIRE(packer.pack(second));
  CHECK(out.size() - first_size == 1 + 1 + 1 + 2 + 1 + 2);
  orch::sqlite::ValueUnpacker reader(out);
  Value a, b;
  REQUIRE(reader.unpack(&a).ok());
  REQUIRE(reader.unpack(&b).ok());
  CHECK(reader.at_end());
  CHECK(a.to_json() == first.to_json());
  CHECK(b.to_json() == second.to_json());
  // More distinct strings than the table holds: those after its end are
  // written whole, every one reads back.
  orch::Array many;
  for (int i = 0; i < 600; ++i) many.push_back(Value("string-" + std::to_string(i % 300)));
  const Value list(std::move(many));
  auto list_back = orch::sqlite::unpack_value(orch::sqlite::pack_value(list));
  REQUIRE(list_back.ok());
  CHECK(list_back->to_json() == list.to_json());
  // A repeat of a string not (yet) in the table is an error.
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x09\x00", 2)).ok());
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x06\x02\x25greet\x09\x01", 10)).ok());
  CHECK(orch::sqlite::unpack_value(std::string("\x06\x02\x25greet\x09\x00", 10)).ok());
  CHECK_FALSE(orch::sqlite::unpack_value(std::string("\x06\x02\x23" "abc" "\x09\x00", 7)).ok());  // too short to be in it
}

TEST_CASE("the events of a batch share one row and read back from any seq", "[sqlite][packed]") {
  TempDir dir;
  const std::string path = dir.file("batch.db");
  auto store = open_store(path);
  RunRecord run = make_run("r");
  REQUIRE(store->create_run(run).ok());
  std::vector<orch::EventRecord> expected;
  orch::EventRecord started;
  started.run_id = "r";
  started.kind = "run.started";
  started.data = Value::object();
  started.created_at_ms = 1796595487622;
  REQUIRE(store->append_event(started).ok());
  started.seq = 1;
  expected.push_back(started);
  Value state = Value::object({{"items", Value::array()}});
  const std::string step = "06b40e31-049f-41f3-a362-919ecaeed3f8";
  for (int v = 0; v < 3; ++v) {
    state = grown_state(state, v);
    orch::StoreBatch batch;
    batch.checkpoint = make_checkpoint("r", v, state);
    run.state = state;
    run.checkpoint_count = v + 1;
    batch.run = run;
    const Checkpoint& cp = *batch.checkpoint;
    auto add = [&](const std::string& kind, Value data, int64_t time) {
      orch::EventRecord e;
      e.run_id = "r";
      e.kind = kind;
      e.data = std::move(data);
      e.created_at_ms = time;
      batch.events.push_back(e);
    };
    // The engine's superstep (derived forms among them), a kind by name,
    // times before, at and after the first, far off.
    add("task_start", Value::object({{"id", step}, {"name", "greet"}, {"type", "transform"}}), 1796595487700 + v);
    add("task_result", Value::object({{"id", step}, {"name", "greet"}, {"ok", true}}), 1796595487699 + v);
    add("updates", Value::object({{"node", "greet"}, {"updates", Value::object({{"n", v}})}}), 1796595487700 + v);
    add("checkpoint.created", Value::object({{"checkpoint_id", cp.id}, {"version", static_cast<long long>(cp.version)},
                                             {"step_id", cp.step_id}}), 1796595487900);
    add("values", Value::object({{"step", cp.step_id}, {"state", cp.state}}), 1796595487900);
    add("values", Value::object({{"step", "x"}, {"n", 1.5}, {"state", cp.state}}), 0);
    add("my.own.kind", Value::object({{"greet", "greet"}}), INT64_MAX);
    REQUIRE(store->write_batch(batch).ok());
    for (const orch::EventRecord& e : batch.events) expected.push_back(e);
  }
  {
    // No checkpoint: two whole events.
    orch::StoreBatch batch;
    for (int i = 0; i < 2; ++i) {
      orch::EventRecord e;
      e.run_id = "r";
      e.kind = "custom";
      e.data = Value::object({{"i", i}});
      e.created_at_ms = 1796595488000 - i;
      batch.events.push_back(e);
    }
    REQUIRE(store->write_batch(batch).ok());
    for (const orch::EventRecord& e : batch.events) expected.push_back(e);
  }
  REQUIRE(expected.size() == 24);
  CHECK(count_in_file(path, "SELECT count(*) FROM events") == 5);
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE form = 4") == 4);
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE form = 4 AND checkpoint_seq IS NULL") == 1);
  auto check_events = [&] {
    for (int64_t after = 0; after <= 25; ++after) {
      for (size_t limit : {size_t{1}, size_t{2}, size_t{6}, size_t{1000}}) {
        auto events = store->list_events("r", after, limit);
        REQUIRE(events.ok());
        const size_t left = after >= 24 ? 0 : 24 - static_cast<size_t>(after);
        REQUIRE(events->size() == std::min(limit, left));
        for (size_t i = 0; i < events->size(); ++i) {
          const orch::EventRecord& want = expected[static_cast<size_t>(after) + i];
          const orch::EventRecord& got = (*events)[i];
          INFO("after " << after << " limit " << limit << " event " << want.seq);
          CHECK(got.seq == static_cast<int64_t>(after) + static_cast<int64_t>(i) + 1);
          CHECK(got.seq == want.seq);
          CHECK(got.kind == want.kind);
          CHECK(got.data.to_json() == want.data.to_json());
          CHECK(got.created_at_ms == want.created_at_ms);
          CHECK(got.run_id == "r");
        }
      }
    }
  };
  check_events();
  // Replaying from version 0 drops checkpoints 1 and 2: the rows of events
  // derived from them become a row per whole event, and read the same.
  REQUIRE(store->truncate_checkpoints("r", 0).ok());
  CHECK(count_in_file(path, "SELECT count(*) FROM events WHERE form = 4") == 2);
  CHECK(count_in_file(path, "SELECT count(*) FROM events") == 1 + 2 + 14);
  check_events();
  // Damaged batch rows are errors, not crashes.
  check_damage_fails(*store, "UPDATE events SET kind = 99 WHERE seq = 2", 1, 1);
  check_damage_fails(*store, "UPDATE events SET kind = 7, data = substr(data, 1, 9) WHERE seq = 2", 0, 10);
  check_damage_fails(*store, "UPDATE events SET data = x'ff00ff00' WHERE seq = 2", 3, 10);
  check_damage_fails(*store, "UPDATE events SET data = x'0a010a01' || data WHERE seq = 23", 22, 10);
  check_damage_fails(*store, "UPDATE events SET kind = 'x' WHERE seq = 23", 22, 10);
}

TEST_CASE("a schema 9 file's packed values are packed again by the upgrade, its checkpoint kinds and node types become codes, all read back the same", "[sqlite][packed]") {
  TempDir dir;
  const std::string path = dir.file("v9.db");
  // Rows as schema 9 wrote them: each event a row, no back-references.
  // {"id": <uuid>, "name": "greet", "step_id": <the same uuid>}
  const std::string uuid_hex = "3EF53A8E3C4546539A39048DAEEC1BFF";
  const std::string v9_data = "X'070380 08" + uuid_hex + " 81 25677265657489 08" + uuid_hex + "'";
  auto strip = [](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    return s;
  };
  std::vector<Value> states;
  {
    auto store = open_unbatched_store(path);
    RunRecord run = make_run("a");
    REQUIRE(store->create_run(run).ok());
    Value state = Value::object({{"items", Value::array()}});
    for (int v = 0; v < 3; ++v) {
      state = grown_state(state, v);
      states.push_back(state);
      commit(*store, run, make_checkpoint("a", v, state));
    }
    for (const std::string type : {"transform", "my.own.type"}) {
      StepRecord step;
      step.id = type == "transform" ? "00000000-3c45-4653-9a39-048daeec1bff" : "00000001-3c45-4653-9a39-048daeec1bff";
      step.run_id = "a";
      step.node_name = "n";
      step.type = type;
      step.status = StepStatus::kCompleted;
      step.created_at_ms = 1796595487622;
      REQUIRE(store->put_step(step).ok());
    }
    // Checkpoint kinds and node types as schema 9 wrote them, by name.
    REQUIRE(orch::sqlite_execute_for_testing(
                *store, "UPDATE checkpoints SET kind = CASE kind WHEN 's' THEN 'snapshot' ELSE 'delta' END;"
                        "UPDATE steps SET type = 'transform' WHERE typeof(type) = 'blob'").ok());
    REQUIRE(orch::sqlite_execute_for_testing(*store, "INSERT INTO events (run_pk, seq, kind, data, created_at_ms) VALUES "
                                                     "((SELECT pk FROM runs WHERE id = 'a'), 1, 19, " + strip(v9_data) +
                                                     ", 1796595487622), ((SELECT pk FROM runs WHERE id = 'a'), 2, 'mine', " +
                                                     strip(v9_data) + ", 5);"
                                                     "UPDATE runs SET last_event_seq = 2 WHERE id = 'a';"
                                                     "PRAGMA user_version = 9;").ok());
  }
  CHECK(count_in_file(path, "PRAGMA user_version") == 9);
  CHECK(count_in_file(path, "SELECT sum(length(data)) FROM events") == 2 * 45);
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE kind IN ('snapshot', 'delta')") == 3);
  auto store = open_store(path);
  CHECK(count_in_file(path, "SELECT count(*) FROM checkpoints WHERE kind IN ('s', 'd')") == 3);
  auto checkpoints = store->list_checkpoints("a");
  REQUIRE(checkpoints.ok());
  REQUIRE(checkpoints->size() == 3);
  for (size_t i = 0; i < states.size(); ++i) CHECK((*checkpoints)[i].state.to_json() == states[i].to_json());
  // The language's node types are one byte, others stay text.
  CHECK(count_in_file(path, "SELECT count(*) FROM steps WHERE typeof(type) = 'blob' AND length(type) = 1") == 1);
  auto steps = store->list_steps("a");
  REQUIRE(steps.ok());
  REQUIRE(steps->size() == 2);
  CHECK((*steps)[0].type == "transform");
  CHECK((*steps)[1].type == "my.own.type");
  CHECK(count_in_file(path, "PRAGMA user_version") == orch::sqlite_store_schema_version());
  CHECK(count_in_file(path, "SELECT sum(length(data)) FROM events") == 2 * 30);
  auto events = store->list_events("a", 0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 2);
  const std::string json = R"({"id":"3ef53a8e-3c45-4653-9a39-048daeec1bff","name":"greet","step_id":"3ef53a8e-3c45-4653-9a39-048daeec1bff"})";
  CHECK((*events)[0].kind == "task_start");
  CHECK((*events)[0].data.to_json() == json);
  CHECK((*events)[1].kind == "mine");
  CHECK((*events)[1].data.to_json() == json);
  CHECK((*events)[1].created_at_ms == 1796595487627);
  // New batches after the old rows read on from them.
  orch::StoreBatch batch;
  for (int i = 0; i < 3; ++i) {
    orch::EventRecord e;
    e.run_id = "a";
    e.kind = "custom";
    e.data = Value::object({{"i", i}});
    e.created_at_ms = 1796595487700;
    batch.events.push_back(e);
  }
  REQUIRE(store->write_batch(batch).ok());
  auto all = store->list_events("a", 1, 10);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 4);
  CHECK((*all)[0].seq == 2);
  CHECK((*all)[3].seq == 5);
  CHECK((*all)[3].data.to_json() == R"({"i":2})");
  // An unknown node type code is an error, not a crash.
  REQUIRE(orch::sqlite_execute_for_testing(*store, "UPDATE steps SET type = x'09' WHERE typeof(type) = 'blob'").ok());
  CHECK(store->list_steps("a").status().code() == StatusCode::kInternal);
}

TEST_CASE("write_batch_async: what is queued when the store goes is written and called back, and a failing batch fails alone", "[sqlite][async-write]") {
  TempDir dir;
  const std::string path = dir.file("orch.db");
  std::atomic<int> ok{0}, failed{0};
  constexpr int kRuns = 4, kBatches = 60;
  {
    auto store = open_store(path);
    for (int r = 0; r < kRuns; ++r) REQUIRE(store->create_run(make_run("r" + std::to_string(r))).ok());
    std::vector<std::thread> threads;
    for (int r = 0; r < kRuns; ++r) {
      threads.emplace_back([&, r] {
        const std::string run_id = "r" + std::to_string(r);
        for (int i = 0; i < kBatches; ++i) {
          orch::StoreBatch batch;
          orch::EventRecord event;
          // Every tenth batch of run r0 names a run that does not exist: in
          // a group with the others, it alone fails.
          event.run_id = (r == 0 && i % 10 == 9) ? "missing" : run_id;
          event.kind = "step.completed";
          event.data = Value::object({{"i", i}});
          event.created_at_ms = 1700000000000 + i;
          batch.events.push_back(event);
          store->write_batch_async(std::move(batch), [&](Status status, orch::StoreBatch& written) {
            if (status.ok() && written.events[0].seq > 0) {
              ++ok;
            } else {
              ++failed;
            }
          });
        }
      });
    }
    for (auto& t : threads) t.join();
    // The store goes now, with batches still queued.
  }
  CHECK(failed == kBatches / 10);
  CHECK(ok == kRuns * kBatches - kBatches / 10);
  auto reopened = open_store(path);
  int stored = 0;
  for (int r = 0; r < kRuns; ++r) {
    auto events = reopened->list_events("r" + std::to_string(r), 0, 1000);
    REQUIRE(events.ok());
    stored += static_cast<int>(events->size());
    for (size_t i = 0; i < events->size(); ++i) CHECK((*events)[i].seq == static_cast<int64_t>(i) + 1);
  }
  CHECK(stored == ok);
}

TEST_CASE("write_batch_async: a write_batch after a batch still being called back returns only after that callback", "[sqlite][async-write]") {
  TempDir dir;
  auto store = open_store(dir.file("orch.db"));
  REQUIRE(store->create_run(make_run("r")).ok());
  auto batch_of = [](int i) {
    orch::StoreBatch batch;
    orch::EventRecord event;
    event.run_id = "r";
    event.kind = "step.completed";
    event.data = Value::object({{"i", i}});
    event.created_at_ms = 1700000000000 + i;
    batch.events.push_back(event);
    return batch;
  };
  // The writer thread calls the first batch back and is held there: its group
  // is written, nothing else is queued.
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> called_back{false};
  store->write_batch_async(batch_of(0), [&, released](Status status, orch::StoreBatch&) {
    CHECK(status.ok());
    entered.set_value();
    released.wait();
    called_back = true;
  });
  entered.get_future().wait();
  std::atomic<bool> returned{false};
  std::thread later([&] {
    orch::StoreBatch batch = batch_of(1);
    CHECK(store->write_batch(batch).ok());
    CHECK(batch.events[0].seq == 2);
    CHECK(called_back);  // the earlier batch's callback ran first
    returned = true;
  });
  // Held for a while: a write_batch that took the lead itself would have
  // written its batch and returned by now (it did, before the fix).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK_FALSE(returned);
  release.set_value();
  later.join();
  CHECK(returned);
}
