// SPDX-License-Identifier: MIT
// Engine::invoke (a run executed on the caller's thread) and the engine's
// writes per node and per superstep (issue #25: short-run performance).
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "support/engine_fixture.h"

using namespace std::chrono_literals;
using orch::NodeCall;
using orch::NodeOutput;
using orch::Result;
using orch::RunStatus;
using orch::Value;
using orch::testing::make_workflow;

namespace {

// Counts what the engine hands its store, forwarding every call.
class CountingStore : public orch::StoreWrapper {
 public:
  using orch::StoreWrapper::StoreWrapper;

  orch::Status create_run(const orch::RunRecord& run) override {
    ++direct_creates;
    return orch::StoreWrapper::create_run(run);
  }
  orch::Status create_claimed_run(const orch::RunRecord& run, const std::string& owner, int64_t lease_ms) override {
    ++direct_creates;
    return orch::StoreWrapper::create_claimed_run(run, owner, lease_ms);
  }
  orch::Status put_step(const orch::StepRecord& step) override {
    note_step(step.id);
    return orch::StoreWrapper::put_step(step);
  }
  // Forwards to the memory store's own write_batch: it takes what that takes,
  // unless a test says otherwise.
  bool accepts_earlier_checkpoint() const override { return pairs && target().accepts_earlier_checkpoint(); }
  orch::Status write_batch(orch::StoreBatch& batch) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++batches;
      if (batch.earlier_checkpoint && batch.checkpoint) {
        paired.push_back(batch.earlier_checkpoint->step_id + "+" + batch.checkpoint->step_id);
      }
      if (batches == 1) first_batch_creates = batch.create.has_value();
      if (batch.create) ++batches_creating;
      if (batch.create && batch.checkpoint && batch.checkpoint->step_id == "__init__") ++created_with_checkpoint;
    }
    for (const orch::StepRecord& step : batch.steps) note_step(step.id);
    return target().write_batch(batch);  // the memory store's own batch
  }

  void note_step(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    ++step_writes[id];
  }

  std::mutex mu;
  int batches = 0;
  int batches_creating = 0;
  int direct_creates = 0;
  bool first_batch_creates = false;
  int created_with_checkpoint = 0;  // batches creating a run with its __init__ checkpoint
  std::map<std::string, int> step_writes;  // step id -> times written
  bool pairs = true;                        // accepts_earlier_checkpoint() may say yes
  std::vector<std::string> paired;          // "earlier+later" step ids of batches with two checkpoints
};

std::unique_ptr<orch::Engine> open_engine(std::shared_ptr<orch::Store> store, bool parallel = false,
                                          std::shared_ptr<orch::Dispatcher> dispatcher = nullptr) {
  orch::EngineOptions options;
  options.store = std::move(store);
  options.threads = 2;
  options.parallel_function_nodes = parallel;
  options.dispatcher = std::move(dispatcher);
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  return std::move(engine).value();
}

// Records the thread each call ran on.
struct Threads {
  std::mutex mu;
  std::vector<std::thread::id> ids;
  void note() {
    std::lock_guard<std::mutex> lock(mu);
    ids.push_back(std::this_thread::get_id());
  }
};

// a -> b -> c over `counter` (last value), each adding 1.
std::shared_ptr<const orch::Workflow> counting_chain(Threads* threads) {
  auto add_one = [threads](const NodeCall& call) -> Result<NodeOutput> {
    if (threads != nullptr) threads->note();
    return NodeOutput(Value::object({{"counter", call.state["counter"].get_int(0) + 1}}));
  };
  return make_workflow(R"({"state_schema": {"counter": {"type": "number"}},
    "nodes": {"a": {}, "b": {}, "c": {}},
    "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})",
                       {{"a", add_one}, {"b", add_one}, {"c", add_one}});
}

// `width` nodes fanned out from __start__, each appending its index to
// `results`, then `join` writing `count`.
std::shared_ptr<const orch::Workflow> fan_out(int width, Threads* threads,
                                              std::function<void()> in_each = nullptr) {
  std::string nodes, edges;
  std::map<std::string, orch::NodeFunction> fns;
  for (int i = 0; i < width; ++i) {
    std::string name = "p" + std::to_string(i);
    nodes += "\"" + name + "\": {},";
    edges += "[\"__start__\",\"" + name + "\"],[\"" + name + "\",\"join\"],";
    fns[name] = [i, threads, in_each](const NodeCall&) -> Result<NodeOutput> {
      if (threads != nullptr) threads->note();
      if (in_each) in_each();
      return NodeOutput(Value::object({{"results", Value::array({i})}}));
    };
  }
  fns["join"] = [](const NodeCall& call) -> Result<NodeOutput> {
    return NodeOutput(Value::object({{"count", static_cast<long long>(call.state["results"].size())}}));
  };
  return make_workflow(R"({"state_schema": {"results": {"type": "array", "reducer": "append"}, "count": {"type": "number"}},
    "nodes": {)" + nodes + R"("join": {}}, "edges": [)" + edges + R"(["join","__end__"]]})",
                       fns);
}

// Answers every call from its own thread with state_updates {"worked": <node>}.
class ThreadedDispatcher : public orch::Dispatcher {
 public:
  ~ThreadedDispatcher() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::thread& t : threads_) t.join();
  }
  void dispatch(const orch::WorkerRequest& request, Callback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([node = request.node_name, done = std::move(done)] {
      orch::WorkerReply reply;
      reply.output = "ok";
      reply.envelope = Value::object({{"state_updates", Value::object({{"worked", node}})}});
      done(std::move(reply));
    });
  }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("invoke runs a run of in-process nodes to its end on the calling thread", "[engine][invoke]") {
  Threads threads;
  auto store = orch::new_memory_store();
  auto engine = open_engine(store);
  auto done = engine->invoke(counting_chain(&threads), orch::RunOptions());
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["counter"].get_int(0) == 3);
  REQUIRE(threads.ids.size() == 3);
  for (const std::thread::id& id : threads.ids) CHECK(id == std::this_thread::get_id());
  // Stored and checkpointed as a started run is.
  auto stored = store->get_run(done->id);
  REQUIRE(stored.ok());
  CHECK(stored->status == RunStatus::kCompleted);
  CHECK(stored->state["counter"].get_int(0) == 3);
  auto cps = store->list_checkpoints(done->id);
  REQUIRE(cps.ok());
  CHECK(cps->size() == 5);  // __init__, a, b, c, __end__
  auto got = engine->get_run(done->id);
  REQUIRE(got.ok());
  CHECK(got->status == RunStatus::kCompleted);
  CHECK(engine->active_runs() == 0);
}

TEST_CASE("invoke runs the parallel in-process nodes of a superstep one after the other on the calling thread",
          "[engine][invoke]") {
  Threads threads;
  auto engine = open_engine(orch::new_memory_store());
  auto done = engine->invoke(fan_out(5, &threads), orch::RunOptions());
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["results"].to_json() == "[0,1,2,3,4]");  // definition order
  CHECK(done->state["count"].get_int(0) == 5);
  REQUIRE(threads.ids.size() == 5);
  for (const std::thread::id& id : threads.ids) CHECK(id == std::this_thread::get_id());
}

TEST_CASE("parallel_function_nodes runs a superstep's in-process nodes at once on engine threads", "[engine][invoke]") {
  // Each node waits until both have started: run one after the other they
  // would not both see the other (each gives up after 10 s).
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  std::atomic<int> met{0};
  auto meet = [&] {
    std::unique_lock<std::mutex> lock(mu);
    ++started;
    cv.notify_all();
    if (cv.wait_for(lock, 10s, [&] { return started >= 2; })) ++met;
  };
  Threads threads;
  auto engine = open_engine(orch::new_memory_store(), /*parallel=*/true);
  auto done = engine->invoke(fan_out(2, &threads, meet), orch::RunOptions());
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(met.load() == 2);
  CHECK(done->state["results"].to_json() == "[0,1]");
  REQUIRE(threads.ids.size() == 2);
  CHECK(threads.ids[0] != threads.ids[1]);
}

TEST_CASE("invoke waits for a node that calls a worker, then goes on", "[engine][invoke]") {
  auto dispatcher = std::make_shared<ThreadedDispatcher>();
  auto add_one = [](const NodeCall& call) -> Result<NodeOutput> {
    return NodeOutput(Value::object({{"counter", call.state["counter"].get_int(0) + 1}}));
  };
  auto wf = make_workflow(R"({"state_schema": {"counter": {"type": "number"}},
    "nodes": {"a": {}, "w": {"prompt_template": "go"}, "c": {}},
    "edges": [["__start__","a"],["a","w"],["w","c"],["c","__end__"]]})",
                          {{"a", add_one}, {"c", add_one}});
  auto engine = open_engine(orch::new_memory_store(), false, dispatcher);
  auto done = engine->invoke(wf, orch::RunOptions());
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["counter"].get_int(0) == 2);
  CHECK(done->state["worked"].get_string("") == "w");
}

TEST_CASE("invoke returns an interrupted run, which resume_run continues", "[engine][invoke]") {
  auto wf = make_workflow(R"({"state_schema": {"counter": {"type": "number"}},
    "nodes": {"a": {}, "stop": {"type": "interrupt"}, "c": {}},
    "edges": [["__start__","a"],["a","stop"],["stop","c"],["c","__end__"]]})",
                          {{"a", [](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(Value::object({{"counter", 1}})); }},
                           {"c", [](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(Value::object({{"counter", 2}})); }}});
  auto engine = open_engine(orch::new_memory_store());
  auto paused = engine->invoke(wf, orch::RunOptions());
  REQUIRE(paused.ok());
  REQUIRE(paused->status == RunStatus::kInterrupted);
  CHECK(paused->state["counter"].get_int(0) == 1);
  REQUIRE(engine->resume_run(paused->id, Value()).ok());
  auto done = engine->wait(paused->id, 10s);
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["counter"].get_int(0) == 2);
}

TEST_CASE("invoke reports a failed node as a failed run, and a reused idempotency key as an error", "[engine][invoke]") {
  auto wf = make_workflow(R"({"nodes": {"a": {}}, "edges": [["__start__","a"],["a","__end__"]]})",
                          {{"a", [](const NodeCall&) -> Result<NodeOutput> { return orch::Status::internal("boom"); }}});
  auto engine = open_engine(orch::new_memory_store());
  orch::RunOptions options;
  options.idempotency_key = "once";
  auto failed = engine->invoke(wf, options);
  REQUIRE(failed.ok());
  CHECK(failed->status == RunStatus::kFailed);
  CHECK(failed->error.find("boom") != std::string::npos);
  auto again = engine->invoke(wf, options);
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == orch::StatusCode::kAlreadyExists);
  CHECK(again.status().message() == failed->id);
}

TEST_CASE("an in-process node's step record is written once", "[engine][invoke]") {
  for (bool use_invoke : {true, false}) {
    auto store = std::make_shared<CountingStore>(orch::new_memory_store());
    auto engine = open_engine(store);
    std::string id;
    if (use_invoke) {
      auto done = engine->invoke(counting_chain(nullptr), orch::RunOptions());
      REQUIRE(done.ok());
      REQUIRE(done->status == RunStatus::kCompleted);
      id = done->id;
    } else {
      auto started = engine->start_run(counting_chain(nullptr), orch::RunOptions());
      REQUIRE(started.ok());
      id = *started;
      REQUIRE(engine->wait(id, 10s)->status == RunStatus::kCompleted);
    }
    auto steps = store->list_steps(id);
    REQUIRE(steps.ok());
    REQUIRE(steps->size() == 3);
    std::lock_guard<std::mutex> lock(store->mu);
    for (const orch::StepRecord& step : *steps) {
      INFO("invoke " << use_invoke << ", step " << step.node_name);
      CHECK(step.status == orch::StepStatus::kCompleted);
      CHECK(store->step_writes[step.id] == 1);
    }
  }
}

TEST_CASE("a superstep's writes go out in one write_batch whatever the number of parallel nodes", "[engine][invoke]") {
  // A one-node fan-out and a five-node one: the same supersteps, the same
  // number of batches (the run's start, one per superstep, its end).
  for (bool use_invoke : {true, false}) {
    std::map<int, int> batches;  // width -> write_batch calls
    for (int width : {1, 5}) {
      auto store = std::make_shared<CountingStore>(orch::new_memory_store());
      auto engine = open_engine(store);
      if (use_invoke) {
        auto done = engine->invoke(fan_out(width, nullptr), orch::RunOptions());
        REQUIRE(done.ok());
        REQUIRE(done->status == RunStatus::kCompleted);
      } else {
        auto started = engine->start_run(fan_out(width, nullptr), orch::RunOptions());
        REQUIRE(started.ok());
        REQUIRE(engine->wait(*started, 10s)->status == RunStatus::kCompleted);
      }
      engine.reset();  // nothing left in flight
      batches[width] = store->batches;
    }
    INFO("invoke " << use_invoke);
    CHECK(batches[5] == batches[1]);
    CHECK(batches[1] <= 5);
  }
}

TEST_CASE("a run's last superstep and its end go out in one write when the store takes two checkpoints", "[engine][invoke]") {
  for (bool pairs : {true, false}) {
    INFO("store takes two checkpoints: " << pairs);
    std::map<std::string, int> batches;  // "invoke" / "start" -> write_batch calls
    for (bool use_invoke : {true, false}) {
      auto store = std::make_shared<CountingStore>(orch::new_memory_store());
      store->pairs = pairs;
      auto engine = open_engine(store);
      std::string run_id;
      if (use_invoke) {
        auto done = engine->invoke(counting_chain(nullptr), orch::RunOptions());
        REQUIRE(done.ok());
        REQUIRE(done->status == RunStatus::kCompleted);
        run_id = done->id;
      } else {
        auto started = engine->start_run(counting_chain(nullptr), orch::RunOptions());
        REQUIRE(started.ok());
        REQUIRE(engine->wait(*started, 10s)->status == RunStatus::kCompleted);
        run_id = *started;
      }
      engine.reset();
      std::lock_guard<std::mutex> lock(store->mu);
      if (pairs) {
        CHECK(store->paired == std::vector<std::string>{"c+__end__"});
      } else {
        CHECK(store->paired.empty());
      }
      batches[use_invoke ? "invoke" : "start"] = store->batches;
      // Every checkpoint is there, in order, each the parent of the next.
      auto checkpoints = store->list_checkpoints(run_id);
      REQUIRE(checkpoints.ok());
      std::vector<std::string> steps;
      for (const orch::Checkpoint& cp : *checkpoints) steps.push_back(cp.step_id);
      CHECK(steps == std::vector<std::string>{"__init__", "a", "b", "c", "__end__"});
      for (size_t i = 1; i < checkpoints->size(); ++i) CHECK((*checkpoints)[i].parent_id == (*checkpoints)[i - 1].id);
      CHECK(checkpoints->back().state["counter"] == Value(3));
      auto run = store->get_run(run_id);
      REQUIRE(run.ok());
      CHECK(run->checkpoint_count == 5);
      CHECK(run->status == RunStatus::kCompleted);
    }
    // The run's start, one write per node and the end, which the last node's
    // write carries when the store takes two checkpoints.
    CHECK(batches["invoke"] <= (pairs ? 4 : 5));
  }
}

TEST_CASE("a run starts with one write: the run, its start event and its first checkpoint", "[engine][invoke]") {
  auto store = std::make_shared<CountingStore>(orch::new_memory_store());
  auto engine = open_engine(store);
  auto started = engine->start_run(counting_chain(nullptr), orch::RunOptions());
  REQUIRE(started.ok());
  REQUIRE(engine->wait(*started, 10s)->status == RunStatus::kCompleted);
  auto done = engine->invoke(counting_chain(nullptr), orch::RunOptions());
  REQUIRE(done.ok());
  std::lock_guard<std::mutex> lock(store->mu);
  CHECK(store->direct_creates == 0);
  CHECK(store->batches_creating == 2);
  CHECK(store->first_batch_creates);
  CHECK(store->created_with_checkpoint == 2);
  auto events = store->list_events(done->id, 0, 1);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK((*events)[0].kind == "run.started");
}

TEST_CASE("node_events false writes a run's lifecycle events and none of its per-node ones", "[engine][invoke]") {
  auto store = orch::new_memory_store();
  orch::EngineOptions options;
  options.store = store;
  options.node_events = false;
  auto engine = orch::Engine::open(options);
  REQUIRE(engine.ok());
  auto done = (*engine)->invoke(counting_chain(nullptr), orch::RunOptions());
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["counter"].get_int(0) == 3);
  auto events = store->list_events(done->id, 0, 100);
  REQUIRE(events.ok());
  std::vector<std::string> kinds;
  for (const orch::EventRecord& e : *events) kinds.push_back(e.kind);
  CHECK(kinds == std::vector<std::string>{"run.started", "run.completed"});
  CHECK(store->list_steps(done->id)->size() == 3);        // steps are still recorded
  CHECK(store->list_checkpoints(done->id)->size() == 5);  // and checkpoints
}

TEST_CASE("consecutive runs on one thread each store their own events, whatever the previous run left", "[engine][invoke]") {
  // Written events are reused for the next runs' events (their buffers):
  // nothing of an earlier run may show in a later one's.
  auto store = orch::new_memory_store();
  auto engine = open_engine(store);
  auto workflow = counting_chain(nullptr);
  std::vector<std::string> first_kinds;
  for (int run = 0; run < 3; ++run) {
    auto done = engine->invoke(workflow, orch::RunOptions());
    REQUIRE(done.ok());
    REQUIRE(done->status == RunStatus::kCompleted);
    auto events = store->list_events(done->id, 0, 1000);
    REQUIRE(events.ok());
    std::vector<std::string> kinds;
    std::set<std::string> step_ids;
    auto steps = store->list_steps(done->id);
    REQUIRE(steps.ok());
    for (const orch::StepRecord& s : *steps) step_ids.insert(s.id);
    for (const orch::EventRecord& e : *events) {
      kinds.push_back(e.kind);
      CHECK(e.run_id == done->id);
      CHECK(e.data.is_object());
      if (e.kind == "step.started" || e.kind == "step.completed") {
        CHECK(step_ids.count(e.data["step_id"].get_string("")) == 1);  // this run's step
      }
      if (e.kind == "run.completed") CHECK(e.data["state"]["counter"].get_int(0) == 3);
    }
    if (run == 0) {
      first_kinds = kinds;
      CHECK(kinds.size() > 10);
    } else {
      CHECK(kinds == first_kinds);
    }
  }
}

TEST_CASE("a run's first write is unfenced even after earlier runs ended on the same thread", "[engine][invoke]") {
  // An ended run's emptied batch is reused by the next run on the thread: it
  // must not carry the earlier run's lease into the new run's creation.
  struct LeaseRecordingStore : orch::StoreWrapper {
    using orch::StoreWrapper::StoreWrapper;
    orch::Status write_batch(orch::StoreBatch& batch) override {
      if (batch.create) {
        std::lock_guard<std::mutex> lock(mu);
        create_epochs.push_back(batch.lease_epoch);
        create_owners.push_back(batch.lease_owner);
      }
      return target().write_batch(batch);
    }
    std::mutex mu;
    std::vector<int64_t> create_epochs;
    std::vector<std::string> create_owners;
  };
  auto store = std::make_shared<LeaseRecordingStore>(orch::new_memory_store());
  auto engine = open_engine(store);
  auto workflow = counting_chain(nullptr);
  for (int run = 0; run < 3; ++run) {
    auto done = engine->invoke(workflow, orch::RunOptions());
    REQUIRE(done.ok());
    CHECK(done->status == RunStatus::kCompleted);
  }
  std::lock_guard<std::mutex> lock(store->mu);
  REQUIRE(store->create_epochs.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(store->create_epochs[i] == 0);
    CHECK(store->create_owners[i].empty());
  }
}
