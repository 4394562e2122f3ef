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
