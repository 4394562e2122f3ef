// SPDX-License-Identifier: MIT
// The Store conformance suite against the stores orch ships.
#include "orch/testing/store_conformance.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>

#include "audited_store.h"  // examples/
#include "catch.h"
#include "orch/sqlite_store.h"
#include "orch/store.h"

namespace {

std::string describe(const std::vector<std::string>& failures) {
  std::string out;
  for (const std::string& f : failures) out += f + "\n";
  return out;
}

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ =
        std::filesystem::temp_directory_path() /
        ("orch-store-conformance-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace

TEST_CASE("the in-memory store passes the conformance suite", "[store][conformance]") {
  std::vector<std::string> failures =
      orch::testing::run_store_conformance([] { return orch::new_memory_store(); });
  INFO(describe(failures));
  CHECK(failures.empty());
}

TEST_CASE("a host's own store (examples/audited_store.h) passes the conformance suite", "[store][conformance]") {
  std::vector<std::string> failures = orch::testing::run_store_conformance(
      [] { return std::make_shared<AuditedStore>(orch::new_memory_store()); });
  INFO(describe(failures));
  CHECK(failures.empty());
}

TEST_CASE("the SQLite store passes the conformance suite", "[store][conformance][sqlite]") {
  TempDir dir;
  int n = 0;
  std::vector<std::string> failures =
      orch::testing::run_store_conformance([&]() -> std::shared_ptr<orch::Store> {
        auto store = orch::open_sqlite_store(dir.file("store-" + std::to_string(n++) + ".db"));
        if (!store.ok()) return nullptr;
        return *store;
      });
  INFO(describe(failures));
  CHECK(failures.empty());
}

TEST_CASE("the SQLite store passes the conformance suite in memory",
          "[store][conformance][sqlite]") {
  std::vector<std::string> failures =
      orch::testing::run_store_conformance([]() -> std::shared_ptr<orch::Store> {
        auto store = orch::open_sqlite_store(":memory:");
        if (!store.ok()) return nullptr;
        return *store;
      });
  INFO(describe(failures));
  CHECK(failures.empty());
}

TEST_CASE("the SQLite store conforms with tiny delta chains", "[store][conformance][sqlite]") {
  // max_delta_chain 2 and 0 exercise snapshot/delta boundaries everywhere.
  TempDir dir;
  for (int chain : {0, 1, 2}) {
    int n = 0;
    orch::SqliteStoreOptions options;
    options.max_delta_chain = chain;
    options.max_idle_connections = 1;
    orch::testing::StoreConformanceOptions suite;
    suite.threads = 3;
    suite.events_per_thread = 20;
    std::vector<std::string> failures = orch::testing::run_store_conformance(
        [&]() -> std::shared_ptr<orch::Store> {
          auto store = orch::open_sqlite_store(
              dir.file("chain" + std::to_string(chain) + "-" + std::to_string(n++) + ".db"),
              options);
          if (!store.ok()) return nullptr;
          return *store;
        },
        suite);
    INFO("max_delta_chain " << chain << "\n" << describe(failures));
    CHECK(failures.empty());
  }
}

TEST_CASE("the conformance suite catches a broken store", "[store][conformance]") {
  // A store that forgets to assign event seqs must fail, or the suite proves nothing.
  class Forgetful final : public orch::Store {
   public:
    Forgetful() : inner_(orch::new_memory_store()) {}
    orch::Status create_run(const orch::RunRecord& r) override { return inner_->create_run(r); }
    orch::Status update_run(const orch::RunRecord& r) override { return inner_->update_run(r); }
    orch::Result<orch::RunRecord> get_run(const std::string& id) override {
      return inner_->get_run(id);
    }
    orch::Result<orch::RunRecord> find_run_by_idempotency_key(const std::string& k) override {
      return inner_->find_run_by_idempotency_key(k);
    }
    orch::Result<std::vector<orch::RunRecord>> list_runs(const orch::RunFilter& f) override {
      return inner_->list_runs(f);
    }
    orch::Status delete_run(const std::string& id) override { return inner_->delete_run(id); }
    orch::Status claim_run(const std::string& id, const std::string& o, int64_t ms) override {
      return inner_->claim_run(id, o, ms);
    }
    orch::Status commit_checkpoint(const orch::Checkpoint& cp, const orch::RunRecord& r,
                                   bool s) override {
      return inner_->commit_checkpoint(cp, r, s);
    }
    orch::Result<orch::Checkpoint> get_checkpoint(const std::string& id) override {
      return inner_->get_checkpoint(id);
    }
    orch::Result<orch::Checkpoint> latest_checkpoint(const std::string& id) override {
      return inner_->latest_checkpoint(id);
    }
    orch::Result<std::vector<orch::Checkpoint>> list_checkpoints(const std::string& id) override {
      return inner_->list_checkpoints(id);
    }
    orch::Status truncate_checkpoints(const std::string& id, int64_t v) override {
      return inner_->truncate_checkpoints(id, v);
    }
    orch::Status put_pending_write(const orch::PendingWrite& w) override {
      return inner_->put_pending_write(w);
    }
    orch::Result<std::vector<orch::PendingWrite>> list_pending_writes(
        const std::string& id) override {
      return inner_->list_pending_writes(id);
    }
    orch::Status put_step(const orch::StepRecord& s) override { return inner_->put_step(s); }
    orch::Result<orch::StepRecord> get_step(const std::string& id) override {
      return inner_->get_step(id);
    }
    orch::Result<std::vector<orch::StepRecord>> list_steps(const std::string& id) override {
      return inner_->list_steps(id);
    }
    orch::Result<int64_t> append_event(orch::EventRecord e) override {
      orch::Result<int64_t> seq = inner_->append_event(std::move(e));
      return seq.ok() ? orch::Result<int64_t>(1) : seq;  // always 1: wrong
    }
    orch::Result<std::vector<orch::EventRecord>> list_events(const std::string& id, int64_t after,
                                                             size_t limit) override {
      return inner_->list_events(id, after, limit);
    }
    orch::Status put_workflow(const orch::WorkflowRecord& w, bool c) override {
      return inner_->put_workflow(w, c);
    }
    orch::Result<orch::WorkflowRecord> get_workflow(const std::string& id) override {
      return inner_->get_workflow(id);
    }
    orch::Result<std::vector<orch::WorkflowRecord>> list_workflows() override {
      return inner_->list_workflows();
    }
    orch::Status delete_workflow(const std::string& id) override {
      return inner_->delete_workflow(id);
    }

   private:
    std::shared_ptr<orch::Store> inner_;
  };
  orch::testing::StoreConformanceOptions suite;
  suite.threads = 2;
  suite.events_per_thread = 5;
  std::vector<std::string> failures =
      orch::testing::run_store_conformance([] { return std::make_shared<Forgetful>(); }, suite);
  REQUIRE_FALSE(failures.empty());
  bool names_events = false;
  for (const std::string& f : failures) names_events = names_events || f.rfind("events:", 0) == 0;
  CHECK(names_events);
}

// The memory store reuses a deleted run's storage for the next run created:
// nothing of the deleted run may show through.
TEST_CASE("the in-memory store: a run created after deleted ones holds nothing of theirs", "[store]") {
  auto store = orch::new_memory_store();
  for (int i = 0; i < 6; ++i) {
    const std::string id = "deleted-" + std::to_string(i);
    orch::RunRecord run;
    run.id = id;
    run.status = orch::RunStatus::kRunning;
    run.idempotency_key = "key-" + std::to_string(i);
    REQUIRE(store->create_run(run).ok());
    REQUIRE(store->claim_run_lease(id, "owner", 60000).ok());
    orch::StoreBatch batch;
    orch::StepRecord step;
    step.id = "step-" + std::to_string(i);
    step.run_id = id;
    step.node_name = "a";
    batch.steps.push_back(step);
    batch.pending_writes.push_back(orch::PendingWrite{id, 2, "a", orch::Value::object({{"x", 1}})});
    orch::EventRecord event;
    event.run_id = id;
    event.kind = "run.started";
    batch.events.push_back(event);
    REQUIRE(store->write_batch(batch).ok());
    orch::Checkpoint cp;
    cp.id = "cp-" + std::to_string(i);
    cp.run_id = id;
    cp.version = 1;
    REQUIRE(store->commit_checkpoint(cp, run, false).ok());
    REQUIRE(store->put_pending_write(orch::PendingWrite{id, 2, "b", orch::Value()}).ok());
    REQUIRE(store->delete_run(id).ok());
  }
  for (int i = 0; i < 6; ++i) {
    const std::string id = "new-" + std::to_string(i);
    orch::RunRecord run;
    run.id = id;
    run.status = orch::RunStatus::kPending;
    REQUIRE(store->create_run(run).ok());
    auto got = store->get_run(id);
    REQUIRE(got.ok());
    CHECK(got->status == orch::RunStatus::kPending);
    CHECK(got->idempotency_key.empty());
    CHECK(store->list_steps(id)->empty());
    CHECK(store->list_events(id, 0, 100)->empty());
    CHECK(store->list_checkpoints(id)->empty());
    CHECK(store->list_pending_writes(id)->empty());
    CHECK(!store->latest_checkpoint(id).ok());
    CHECK(*store->claim_run_lease(id, "other", 60000) == 1);  // a fresh lease, nobody else's
    CHECK(!store->get_step("step-" + std::to_string(i)).ok());
    CHECK(!store->get_checkpoint("cp-" + std::to_string(i)).ok());
    CHECK(store->find_run_by_idempotency_key("key-" + std::to_string(i)).status().code() ==
          orch::StatusCode::kNotFound);
    // Its own writes land as usual.
    orch::StoreBatch batch;
    orch::EventRecord event;
    event.run_id = id;
    event.kind = "step.completed";
    batch.events.push_back(event);
    event.kind = "state.injected";  // shares step.completed's kind slot (see intern_kind)
    batch.events.push_back(event);
    REQUIRE(store->write_batch(batch).ok());
    auto events = store->list_events(id, 0, 100);
    REQUIRE(events->size() == 2);
    CHECK((*events)[0].kind == "step.completed");
    CHECK((*events)[1].kind == "state.injected");
    CHECK((*events)[1].seq == 2);
  }
}

TEST_CASE("the in-memory store: a batch with a checkpoint leaves no pending writes, one without keeps them", "[store]") {
  auto store = orch::new_memory_store();
  orch::RunRecord run;
  run.id = "r";
  run.status = orch::RunStatus::kRunning;
  REQUIRE(store->create_run(run).ok());
  orch::StoreBatch pending;
  pending.pending_writes.push_back(orch::PendingWrite{"r", 2, "a", orch::Value::object({{"x", 1}})});
  REQUIRE(store->write_batch(pending).ok());
  REQUIRE(store->list_pending_writes("r")->size() == 1);
  orch::StoreBatch with_checkpoint;
  with_checkpoint.pending_writes.push_back(orch::PendingWrite{"r", 2, "b", orch::Value()});
  with_checkpoint.checkpoint.emplace();
  with_checkpoint.checkpoint->id = "cp";
  with_checkpoint.checkpoint->run_id = "r";
  with_checkpoint.checkpoint->version = 2;
  with_checkpoint.run = run;
  REQUIRE(store->write_batch(with_checkpoint).ok());
  CHECK(store->list_pending_writes("r")->empty());
  CHECK(store->list_checkpoints("r")->size() == 1);
}
