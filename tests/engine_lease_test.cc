// SPDX-License-Identifier: MIT
// Leases with fencing in the engine (issue #21), on the in-memory store:
// two engines on one store, the stale one fenced out; a transient store
// failure does not fail a run.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <condition_variable>
#include <mutex>

#include "catch.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "support/engine_fixture.h"
#include "support/fencing_scenario.h"

using orch::Result;
using orch::RunStatus;
using orch::Status;
using orch::StatusCode;
using orch::StoreBatch;
using orch::Value;

TEST_CASE("an engine whose run was taken over has every write refused and drops the run", "[engine][lease]") {
  auto store = orch::new_memory_store();
  orch::testing::FencingOutcome o = orch::testing::run_fencing_scenario(store, store);
  REQUIRE(o.started);
  CHECK(o.taken_over == 1);
  CHECK(o.final_status == RunStatus::kCompleted);
  CHECK(o.refused_writes_a >= 1);
  CHECK(o.accepted_writes_a_after_takeover == 0);
  CHECK(o.a_dropped_run);
  CHECK(o.slow_on_a == 1);
  CHECK(o.slow_on_b == 1);
  CHECK(o.after_on_a == 0);  // A ran nothing after losing the run
  CHECK(o.after_on_b == 1);  // and B everything, once
  CHECK(o.completed_events == 1);
  CHECK(o.slow_results == 1);  // only B's result of the node is stored
}

TEST_CASE("take_over_expired_runs leaves runs with live leases alone", "[engine][lease]") {
  auto store = orch::new_memory_store();
  auto wf = orch::testing::make_workflow(R"({"id": "w", "nodes": {"a": {"type": "interrupt"}},
    "edges": [["__start__","a"],["a","__end__"]]})");
  orch::EngineOptions a_options;
  a_options.store = store;
  a_options.owner_id = "a";
  a_options.lease_ms = 600000;
  auto a = orch::Engine::open(a_options);
  REQUIRE(a.ok());
  orch::RunRecord running;
  running.id = "live";
  running.status = RunStatus::kRunning;
  running.workflow = wf->definition;
  REQUIRE(store->create_claimed_run(running, "a", 600000).ok());
  orch::EngineOptions b_options = a_options;
  b_options.owner_id = "b";
  auto b = orch::Engine::open(b_options);
  REQUIRE(b.ok());
  auto taken = (*b)->take_over_expired_runs(10);
  REQUIRE(taken.ok());
  CHECK(*taken == 0);
  // Once A's lease has run out, B takes it.
  REQUIRE(store->claim_run_lease("live", "a", 0).ok());
  taken = (*b)->take_over_expired_runs(10);
  REQUIRE(taken.ok());
  CHECK(*taken == 1);
}

namespace {

// Fails the first write_batch that carries a checkpoint with Unavailable.
class BlinkingStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status write_batch(StoreBatch& batch) override {
    if (batch.checkpoint && batch.checkpoint->version >= 2 && !failed_.exchange(true)) {
      return Status::unavailable("the database is restarting");
    }
    return target().write_batch(batch);
  }

 private:
  std::atomic<bool> failed_{false};
};

}  // namespace

TEST_CASE("a transient store failure of a checkpoint does not fail the run", "[engine][lease]") {
  auto store = std::make_shared<BlinkingStore>(orch::new_memory_store());
  auto wf = orch::testing::make_workflow(R"({"nodes": {"a": {"type": "transform", "updates": {"x": 1}},
      "b": {"type": "transform", "updates": {"y": 2}}},
    "edges": [["__start__","a"],["a","b"],["b","__end__"]]})");
  auto engine = orch::testing::make_engine(nullptr, nullptr, store);
  orch::RunRecord r = orch::testing::run_to_end(*engine, wf);
  CHECK(r.status == RunStatus::kCompleted);
  CHECK(r.error.empty());
}

namespace {

// Engines "a", whose leases run out at once (as if it had stopped renewing
// them), and "b" on `store`; each resolves workflow "child" to its own
// `child_*` (the same nodes, its own functions) and any other to `parent`.
std::pair<std::unique_ptr<orch::Engine>, std::unique_ptr<orch::Engine>> engines_for_takeover(
    const std::shared_ptr<orch::Store>& store, std::shared_ptr<const orch::Workflow> parent,
    std::shared_ptr<const orch::Workflow> child_a, std::shared_ptr<const orch::Workflow> child_b) {
  auto open = [&](const std::string& owner, int64_t lease_ms, std::shared_ptr<const orch::Workflow> child) {
    orch::EngineOptions options;
    options.store = store;
    options.owner_id = owner;
    options.lease_ms = lease_ms;
    options.workflow_resolver = [parent, child](const std::string& id) -> Result<std::shared_ptr<const orch::Workflow>> {
      if (id == "child") return child;
      return parent;
    };
    auto engine = orch::Engine::open(options);
    REQUIRE(engine.ok());
    return std::move(*engine);
  };
  auto a = open("a", 0, std::move(child_a));
  auto b = open("b", 600000, std::move(child_b));
  return {std::move(a), std::move(b)};
}

}  // namespace

TEST_CASE("a subgraph child running when its parent is taken over is continued, not started again", "[engine][lease]") {
  using namespace std::chrono_literals;
  auto store = orch::new_memory_store();
  std::atomic<int> work_a{0}, work_b{0};
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, released = false;
  const std::string parent_json = R"({"id": "parent", "nodes": {"sub": {"type": "subgraph", "workflow_id": "child", "output_key": "output"}},
    "edges": [["__start__","sub"],["sub","__end__"]]})";
  const std::string child_json = R"({"id": "child", "nodes": {"work": {}}, "edges": [["__start__","work"],["work","__end__"]]})";
  auto parent_wf = orch::testing::make_workflow(parent_json);
  auto child_a = orch::testing::make_workflow(child_json, {{"work", [&](const orch::NodeCall&) -> Result<orch::NodeOutput> {
                                                ++work_a;
                                                std::unique_lock<std::mutex> lock(mu);
                                                entered = true;
                                                cv.notify_all();
                                                cv.wait_for(lock, 60s, [&] { return released; });
                                                return orch::NodeOutput(Value::object({{"output", "by a"}}));
                                              }}});
  auto child_b = orch::testing::make_workflow(child_json, {{"work", [&](const orch::NodeCall&) -> Result<orch::NodeOutput> {
                                                ++work_b;
                                                return orch::NodeOutput(Value::object({{"output", "by b"}}));
                                              }}});
  auto [a, b] = engines_for_takeover(store, parent_wf, child_a, child_b);
  orch::RunOptions run_options;
  run_options.workflow_id = "parent";
  auto id = a->start_run(parent_wf, run_options);
  REQUIRE(id.ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, 30s, [&] { return entered; }));
  }
  auto taken = b->take_over_expired_runs(10);
  REQUIRE(taken.ok());
  CHECK(*taken == 1);  // the parent only: the child follows through it
  auto done = b->wait(*id, 30s);
  {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
    cv.notify_all();
  }
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["output"].get_string("") == "by b");
  orch::RunFilter children;
  children.parent_run_id = *id;
  auto kids = store->list_runs(children);
  REQUIRE(kids.ok());
  CHECK(kids->size() == 1);  // the same child, continued
  CHECK(work_a == 1);
  CHECK(work_b == 1);
  a.reset();  // joins A: its late result for the child was refused
  b.reset();
  auto child_events = store->list_events(kids->front().id, 0, 1000);
  REQUIRE(child_events.ok());
  int completed = 0;
  for (const orch::EventRecord& e : *child_events) completed += e.kind == "run.completed" ? 1 : 0;
  CHECK(completed == 1);
}

TEST_CASE("a send's item children running when their parent is taken over are continued, not started again", "[engine][lease][send]") {
  using namespace std::chrono_literals;
  auto store = orch::new_memory_store();
  std::atomic<int> work_a{0}, work_b{0};
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  const std::string parent_json = R"({"id": "parent", "nodes": {
      "fan": {"type": "send", "items_key": "state.items", "target_node": "each", "output_key": "results"},
      "each": {"type": "subgraph", "workflow_id": "child", "output_key": "output"}},
    "edges": [["__start__","fan"],["fan","__end__"]]})";
  const std::string child_json = R"({"id": "child", "nodes": {"work": {}}, "edges": [["__start__","work"],["work","__end__"]]})";
  auto parent_wf = orch::testing::make_workflow(parent_json);
  auto child_a = orch::testing::make_workflow(child_json, {{"work", [&](const orch::NodeCall&) -> Result<orch::NodeOutput> {
                                                ++work_a;
                                                std::unique_lock<std::mutex> lock(mu);
                                                cv.notify_all();
                                                cv.wait_for(lock, 60s, [&] { return released; });
                                                return orch::NodeOutput(Value::object({{"output", "by a"}}));
                                              }}});
  auto child_b = orch::testing::make_workflow(child_json, {{"work", [&](const orch::NodeCall& call) -> Result<orch::NodeOutput> {
                                                ++work_b;
                                                return orch::NodeOutput(Value::object(
                                                    {{"output", "by b " + call.state["item"].get_string("")}}));
                                              }}});
  auto [a, b] = engines_for_takeover(store, parent_wf, child_a, child_b);
  orch::RunOptions run_options;
  run_options.workflow_id = "parent";
  run_options.input = Value::object({{"items", Value::array({"x", "y", "z"})}});
  auto id = a->start_run(parent_wf, run_options);
  REQUIRE(id.ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, 30s, [&] { return work_a >= 1; }));
  }
  auto taken = b->take_over_expired_runs(10);
  REQUIRE(taken.ok());
  CHECK(*taken == 1);  // the parent only: its children follow through it
  auto done = b->wait(*id, 30s);
  {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
    cv.notify_all();
  }
  REQUIRE(done.ok());
  INFO(done->error);
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["results"].to_json() == R"(["by b x","by b y","by b z"])");
  orch::RunFilter children;
  children.parent_run_id = *id;
  auto kids = store->list_runs(children);
  REQUIRE(kids.ok());
  CHECK(kids->size() == 3);  // the same children, continued
  CHECK(work_b == 3);
  a.reset();
  b.reset();
  // One record per item, each naming its child.
  auto steps = store->list_steps(*id);
  REQUIRE(steps.ok());
  int item_records = 0;
  for (const orch::StepRecord& s : *steps) item_records += s.item_index >= 0 ? 1 : 0;
  CHECK(item_records == 3);
}

namespace {

// Counts list_runs calls that ask for running runs (what recover() lists).
class CountingStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<std::vector<orch::RunRecord>> list_runs(const orch::RunFilter& f) override {
    if (f.status == RunStatus::kRunning) running_lists.fetch_add(1);
    return target().list_runs(f);
  }
  std::atomic<int> running_lists{0};
};

// recover() on an engine "b" while engine "a" holds run "live" for ten
// minutes; then ten of b's leases pass on its manual clock. Returns how many
// times b listed the running runs.
int running_lists_while_leased_elsewhere(bool retries) {
  auto store = std::make_shared<CountingStore>(orch::new_memory_store());
  auto wf = orch::testing::make_workflow(R"({"id": "w", "nodes": {"a": {"type": "interrupt"}},
    "edges": [["__start__","a"],["a","__end__"]]})");
  orch::RunRecord running;
  running.id = "live";
  running.status = RunStatus::kRunning;
  running.workflow = wf->definition;
  REQUIRE(store->create_claimed_run(running, "a", 600000).ok());
  auto clock = std::make_shared<orch::ManualClock>();
  orch::EngineOptions options;
  options.store = store;
  options.clock = clock;
  options.owner_id = "b";
  options.lease_ms = 1000;
  options.recover_retries_leased_runs = retries;
  auto b = orch::Engine::open(options);
  REQUIRE(b.ok());
  REQUIRE((*b)->recover().ok());
  for (int i = 0; i < 10; ++i) clock->advance(std::chrono::milliseconds(1000));
  CHECK((*b)->active_runs() == 0);  // a's run stays a's
  return store->running_lists.load();
}

}  // namespace

TEST_CASE("recover with a takeover loop in the host lists the running runs once, not every lease", "[engine][lease][recover]") {
  // The library default, for hosts without a takeover loop: it looks again
  // every lease_ms while another owner holds a run.
  CHECK(running_lists_while_leased_elsewhere(true) >= 10);
  // recover_retries_leased_runs false (orch serve on PostgreSQL, with its
  // lease keeper): once.
  CHECK(running_lists_while_leased_elsewhere(false) == 1);
}

namespace {

// A run as a stopped process left it: running, leased to `owner` until
// `lease_ms` from now (0: already expired), with a config that says whether
// the host's resume_veto refuses it.
void leave_running_run(orch::Store& store, const std::string& id, const Value& definition, bool vetoed,
                       const std::string& owner, int64_t lease_ms) {
  orch::RunRecord run;
  run.id = id;
  run.status = RunStatus::kRunning;
  run.workflow = definition;
  if (vetoed) run.config = Value::object({{"not_here", true}});
  REQUIRE(store.create_claimed_run(run, owner, 600000).ok());
  REQUIRE(store.claim_run_lease(id, owner, lease_ms).ok());
}

std::string veto_marked(const orch::RunRecord& run) {
  const Value& config = run.config;
  return config["not_here"].get_bool(false) ? "this run cannot continue here" : "";
}

RunStatus status_of(orch::Store& store, const std::string& id, std::string* error = nullptr) {
  auto run = store.get_run(id);
  REQUIRE(run.ok());
  if (error != nullptr) *error = run->error;
  return run->status;
}

}  // namespace

TEST_CASE("a run the host's resume_veto refuses is failed with its answer, by recover and by a takeover", "[engine][lease][recover]") {
  auto wf = orch::testing::make_workflow(R"({"id": "w", "nodes": {"a": {"type": "interrupt"}},
    "edges": [["__start__","a"],["a","__end__"]]})");
  orch::EngineOptions options;
  options.owner_id = "b";
  options.resume_veto = veto_marked;

  // Both paths: a restarted engine's recover(), and another engine's
  // takeover of runs whose lease ran out.
  for (const bool by_takeover : {false, true}) {
    INFO((by_takeover ? "take_over_expired_runs" : "recover"));
    auto store = orch::new_memory_store();
    leave_running_run(*store, "refused", wf->definition, true, "a", 0);
    leave_running_run(*store, "resumed", wf->definition, false, "a", 0);
    options.store = store;
    auto engine = orch::Engine::open(options);
    REQUIRE(engine.ok());
    if (by_takeover) {
      auto taken = (*engine)->take_over_expired_runs(10);
      REQUIRE(taken.ok());
      CHECK(*taken == 1);  // the refused one is not counted: it ended
    } else {
      REQUIRE((*engine)->recover().ok());
    }
    auto resumed = (*engine)->wait("resumed", std::chrono::seconds(10));
    REQUIRE(resumed.ok());
    CHECK(resumed->status == RunStatus::kInterrupted);
    std::string error;
    CHECK(status_of(*store, "refused", &error) == RunStatus::kFailed);
    CHECK(error == "this run cannot continue here");
  }
  {  // A veto that throws fails the run, and the engine goes on.
    auto store = orch::new_memory_store();
    leave_running_run(*store, "refused", wf->definition, false, "a", 0);
    options.store = store;
    options.resume_veto = [](const orch::RunRecord&) -> std::string { throw std::runtime_error("boom"); };
    auto engine = orch::Engine::open(options);
    REQUIRE(engine.ok());
    REQUIRE((*engine)->recover().ok());
    std::string error;
    CHECK(status_of(*store, "refused", &error) == RunStatus::kFailed);
    CHECK(error.find("resume_veto threw") != std::string::npos);
  }
}
