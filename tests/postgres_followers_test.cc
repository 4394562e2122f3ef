// SPDX-License-Identifier: MIT
// Announcing only followed runs (PostgresStoreOptions::announce_followed_only,
// store/postgres/pg_followers.h): what a store announces as watches on the
// database follow and unfollow runs, expired and stale follow records, and
// the set's own rules. On a real PostgreSQL (support/postgres_cluster.h).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/postgres_store.h"
#include "orch/store.h"
#include "store/postgres/pg_followers.h"
#include "support/postgres_cluster.h"
#include "support/postgres_test_helpers.h"
#include "support/store_samples.h"

using orch::EventRecord;
using orch::Store;
using orch::Value;
using orch::postgres::FollowedRuns;
using orch::postgres::kFollowersCollection;

namespace {

std::shared_ptr<Store> open_store(const std::string& schema, bool followed_only) {
  orch::PostgresStoreOptions options;
  options.schema = schema;
  options.announce_followed_only = followed_only;
  auto store = orch::new_postgres_store(orch::testing::require_postgres().conninfo(), options);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return *store;
}

// A watch that records the runs whose events it hears of, in order.
class Listener {
 public:
  explicit Listener(Store& store) {
    auto watch = store.watch_changes([this](const orch::StoreChange& change) {
      if (change.kind != orch::StoreChange::Kind::kEvents) return;
      std::lock_guard<std::mutex> lock(mu_);
      heard_.push_back(change.key);
      cv_.notify_all();
    });
    INFO(watch.status().to_string());
    REQUIRE(watch.ok());
    watch_ = std::move(watch).value();
  }
  orch::StoreWatch& watch() { return *watch_; }
  // Appends an event of `run` through `writer` every 50 ms until this
  // listener hears of it (at most 10 s): true when it did.
  bool hears_after_writes(Store& writer, const std::string& run) {
    for (int i = 0; i < 200; ++i) {
      const size_t before = count(run);
      append(writer, run);
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return count_locked(run) > before; })) return true;
    }
    return false;
  }
  // Waits (at most 10 s) until `run` was heard of `n` times.
  bool wait_count(const std::string& run, size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return count_locked(run) >= n; });
  }
  size_t count(const std::string& run) {
    std::lock_guard<std::mutex> lock(mu_);
    return count_locked(run);
  }
  static void append(Store& writer, const std::string& run) {
    EventRecord e;
    e.run_id = run;
    e.kind = "tick";
    REQUIRE(writer.append_event(e).ok());
  }

 private:
  size_t count_locked(const std::string& run) const {
    return static_cast<size_t>(std::count(heard_.begin(), heard_.end(), run));
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> heard_;
  std::unique_ptr<orch::StoreWatch> watch_;
};

}  // namespace

TEST_CASE("a store announcing followed runs only: what a watch follows is heard, other runs are not, until it unfollows", "[postgres][events]") {
  const std::string schema = orch::testing::fresh_schema("followers");
  auto executor = open_store(schema, /*followed_only=*/true);  // the instance running the runs
  Listener executor_watch(*executor);                          // how it learns who follows
  auto reader = open_store(schema, /*followed_only=*/true);    // another instance, streaming
  Listener streams(*reader);
  for (const char* run : {"quiet", "followed"}) {
    REQUIRE(executor->create_run(orch::testing::sample_running_run(run)).ok());
  }
  streams.watch().follow("followed");
  // The follow reaches the executor through its watch: its writes are then announced.
  REQUIRE(streams.hears_after_writes(*executor, "followed"));
  // Notifications arrive in commit order: once the one after "quiet"'s
  // write is heard, "quiet" would have been heard before it.
  Listener::append(*executor, "quiet");
  const size_t followed_so_far = streams.count("followed");
  Listener::append(*executor, "followed");
  REQUIRE(streams.wait_count("followed", followed_so_far + 1));
  CHECK(streams.count("quiet") == 0);

  // Two follows of one run need two unfollows (two streams of one run).
  streams.watch().follow("followed");
  streams.watch().unfollow("followed");
  auto records = reader->list_host_records(kFollowersCollection);
  REQUIRE(records.ok());
  REQUIRE(records->size() == 1);
  CHECK((*records)[0]["runs"].to_json() == R"(["followed"])");
  CHECK((*records)[0]["until_ms"].get_int(0) > 0);
  streams.watch().unfollow("followed");
  records = reader->list_host_records(kFollowersCollection);
  REQUIRE(records.ok());
  CHECK(records->empty());  // followed by nobody: the record went

  // Nobody follows "followed" now: once the executor has heard so (its
  // watch heard the record go: "quiet", followed meanwhile by another
  // watch, is announced again), "followed" is no longer announced.
  Listener other(*reader);
  other.watch().follow("quiet");
  REQUIRE(other.hears_after_writes(*executor, "quiet"));
  const size_t before = streams.count("followed");
  Listener::append(*executor, "followed");
  const size_t quiet_so_far = other.count("quiet");
  Listener::append(*executor, "quiet");
  REQUIRE(other.wait_count("quiet", quiet_so_far + 1));
  CHECK(streams.count("followed") == before);
}

TEST_CASE("a store announcing followed runs only announces every run while it has no watch of its own", "[postgres][events]") {
  const std::string schema = orch::testing::fresh_schema("followers_nowatch");
  auto writer = open_store(schema, /*followed_only=*/true);
  auto reader = open_store(schema, /*followed_only=*/false);
  Listener heard(*reader);
  for (const char* run : {"r", "marker"}) REQUIRE(writer->create_run(orch::testing::sample_running_run(run)).ok());
  // Nobody follows "r", but the writer cannot know who does: it announces.
  Listener::append(*writer, "r");
  REQUIRE(heard.wait_count("r", 1));
  // With a watch it learns (no follows: silent); without one again, it announces.
  {
    Listener own(*writer);
    Listener::append(*writer, "r");
    Listener::append(*reader, "marker");  // the reader announces every run; heard after "r" would be
    REQUIRE(heard.wait_count("marker", 1));
    CHECK(heard.count("r") == 1);
  }
  Listener::append(*writer, "r");
  REQUIRE(heard.wait_count("r", 2));
}

TEST_CASE("a watch's follow record is gone with the watch, and a dead watch's record stops counting", "[postgres][events][hardening]") {
  const std::string schema = orch::testing::fresh_schema("followers_expiry");
  auto executor = open_store(schema, /*followed_only=*/true);
  Listener executor_watch(*executor);
  auto reader = open_store(schema, /*followed_only=*/false);
  {
    Listener streams(*reader);
    streams.watch().follow("a");
    auto records = reader->list_host_records(kFollowersCollection);
    REQUIRE(records.ok());
    CHECK(records->size() == 1);
  }
  auto records = reader->list_host_records(kFollowersCollection);
  REQUIRE(records.ok());
  CHECK(records->empty());  // a watch that goes takes its follows along

  // A process that died leaves its record: expired, it no longer counts;
  // expired long ago, the next reload deletes it.
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  REQUIRE(reader->put_host_record(kFollowersCollection, "dead",
                                  Value::object({{"id", "dead"},
                                                 {"runs", Value::array({Value("r")})},
                                                 {"until_ms", now - 3 * orch::postgres::kFollowTtlMs}}))
              .ok());
  REQUIRE(reader->put_host_record(kFollowersCollection, "late",
                                  Value::object({{"id", "late"},
                                                 {"runs", Value::array({Value("r")})},
                                                 {"until_ms", now - 1000}}))
              .ok());
  bool deleted = false;
  for (int i = 0; i < 200 && !deleted; ++i) {
    records = reader->list_host_records(kFollowersCollection);
    REQUIRE(records.ok());
    deleted = records->size() == 1;
    if (!deleted) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(deleted);
  CHECK((*records)[0]["id"].get_string("") == "late");  // recently expired: kept (clocks differ)
  Listener heard(*reader);
  REQUIRE(executor->create_run(orch::testing::sample_running_run("r")).ok());
  REQUIRE(executor->create_run(orch::testing::sample_running_run("marker")).ok());
  heard.watch().follow("marker");
  REQUIRE(heard.hears_after_writes(*executor, "marker"));
  Listener::append(*executor, "r");
  const size_t markers = heard.count("marker");
  Listener::append(*executor, "marker");
  REQUIRE(heard.wait_count("marker", markers + 1));
  CHECK(heard.count("r") == 0);
}

TEST_CASE("the followed set: the union of live records, every run while no watch keeps it, malformed records ignored", "[postgres][events]") {
  FollowedRuns runs;
  const int64_t now = 1'000'000'000;
  std::vector<Value> records = {
      Value::object({{"id", "a"}, {"runs", Value::array({Value("x"), Value("y")})}, {"until_ms", now + 10}}),
      Value::object({{"id", "b"}, {"runs", Value::array({Value("z"), Value(7)})}, {"until_ms", now + 10}}),
      Value::object({{"id", "c"}, {"runs", Value::array({Value("gone")})}, {"until_ms", now - 10}}),
      Value::object({{"id", "d"}, {"runs", Value::array({Value("gone")})}, {"until_ms", now - 2 * orch::postgres::kFollowTtlMs}}),
      Value::object({{"id", "e"}, {"runs", Value("not a list")}, {"until_ms", now + 10}}),
      Value("not a record"),
  };
  CHECK(runs.replace(records, now) == std::vector<std::string>{"d"});  // no watch keeps the set: not taken
  CHECK(runs.announced("anything"));
  runs.watch_started();
  CHECK(runs.announced("anything"));  // not read yet
  CHECK(runs.replace(records, now) == std::vector<std::string>{"d"});
  for (const char* followed : {"x", "y", "z"}) CHECK(runs.announced(followed));
  for (const char* not_followed : {"gone", "7", "not a list", "anything"}) CHECK_FALSE(runs.announced(not_followed));
  runs.watch_started();
  runs.watch_stopped();
  CHECK_FALSE(runs.announced("gone"));  // one watch still keeps it
  runs.watch_stopped();
  CHECK(runs.announced("gone"));
}

TEST_CASE("a store whose watch lost its connection reads who follows again once it listens again", "[postgres][events][hardening]") {
  orch::testing::PostgresCluster& pg = orch::testing::require_postgres();
  // A database of its own: new connections to it are refused for a while.
  const std::string db = orch::testing::fresh_schema("follow_reconnect");
  REQUIRE(pg.create_database(db).ok());
  auto open = [&](bool followed_only) {
    orch::PostgresStoreOptions options;
    options.announce_followed_only = followed_only;
    auto store = orch::new_postgres_store(pg.conninfo(db), options);
    INFO(store.status().to_string());
    REQUIRE(store.ok());
    return *store;
  };
  auto executor = open(true);
  Listener executor_watch(*executor);
  REQUIRE(executor->create_run(orch::testing::sample_running_run("r")).ok());
  auto reader = open(false);
  REQUIRE(reader->list_host_records(kFollowersCollection).ok());  // a pooled connection, kept
  // The executor's watch loses its connection and cannot connect again...
  auto cut = pg.psql("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM "
                     "pg_stat_activity WHERE datname = '" + db + "' AND application_name = 'orch-events'",
                     "postgres");
  INFO(cut.status().to_string());
  REQUIRE(cut.ok());
  // ... while "r" comes to be followed: the announcement goes unheard.
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  REQUIRE(reader->put_host_record(kFollowersCollection, "elsewhere",
                                  Value::object({{"id", "elsewhere"},
                                                 {"runs", Value::array({Value("r")})},
                                                 {"until_ms", now + orch::postgres::kFollowTtlMs}}))
              .ok());
  REQUIRE(pg.psql("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true", "postgres").ok());
  // Listening again, the executor reads the follows: "r"'s writes are announced.
  Listener streams(*reader);
  CHECK(streams.hears_after_writes(*executor, "r"));
}
