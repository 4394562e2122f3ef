// SPDX-License-Identifier: MIT
// Worker calls that follow their write without the engine waiting for it
// (Store::write_batch_async, issue #25): the call goes out only once its step
// record is committed, the engine thread is free meanwhile, a failed write
// fails the run and sends nothing, and calls of one superstep wait for the
// one write that holds their records.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "catch.h"
#include "orch/dispatcher.h"
#include "orch/engine.h"
#include "orch/sqlite_store.h"
#include "orch/store.h"
#include "support/engine_fixture.h"

using namespace std::chrono_literals;
using orch::RunStatus;
using orch::Status;
using orch::StoreBatch;

namespace {

// Holds every write_batch_async until the test lets it through (written by
// the target store on the test's thread, as a store's writer thread would)
// or fails it.
class HeldStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  void write_batch_async(StoreBatch batch, BatchDone done) override {
    std::lock_guard<std::mutex> lock(mu_);
    held_.push_back({std::move(batch), std::move(done)});
    cv_.notify_all();
  }

  // Waits up to 10 s for `count` writes to be held.
  bool wait_held(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return held_.size() >= count; });
  }

  // Writes (or fails with `failure`) the oldest held write and calls it back.
  void release(Status failure = Status()) {
    Held h;
    {
      std::lock_guard<std::mutex> lock(mu_);
      h = std::move(held_.front());
      held_.pop_front();
    }
    Status status = failure.ok() ? target().write_batch(h.batch) : failure;
    h.done(std::move(status), h.batch);
  }

  StoreBatch& oldest() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_.front().batch;
  }

  size_t held_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_.size();
  }

 private:
  struct Held {
    StoreBatch batch;
    BatchDone done;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Held> held_;
};

// Answers every call at once, noting whether the store held the call's step
// record when the call went out.
class CheckingDispatcher : public orch::Dispatcher {
 public:
  explicit CheckingDispatcher(std::shared_ptr<orch::Store> store) : store_(std::move(store)) {}

  void dispatch(const orch::WorkerRequest& request, Callback done) override {
    if (store_->get_step(request.step_id).ok()) ++calls_with_record;
    ++calls;
    orch::WorkerReply reply;
    reply.output = "done " + request.node_name;
    done(std::move(reply));
  }

  std::atomic<int> calls{0};
  std::atomic<int> calls_with_record{0};

 private:
  std::shared_ptr<orch::Store> store_;
};

// Delivers every reply on its own thread, as an HTTP client's event loop
// does, inside a ReplyScope that says so; notes the threads calls are sent on.
class LoopDispatcher : public orch::Dispatcher {
 public:
  // `inline_workers`: claims to run workers inside dispatch() (as
  // InProcessWorkers does), so that no event loop may call it.
  explicit LoopDispatcher(bool inline_workers = false) : inline_workers_(inline_workers), loop_([this] { run(); }) {}
  bool runs_workers_inline() const override { return inline_workers_; }
  ~LoopDispatcher() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    loop_.join();
  }

  void dispatch(const orch::WorkerRequest& request, Callback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    sent_on.push_back(std::this_thread::get_id());
    queue_.push_back({request.node_name, std::move(done)});
    cv_.notify_all();
  }

  std::thread::id loop_id() const { return loop_.get_id(); }
  std::vector<std::thread::id> sent_threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_on;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto [node, done] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      {
        orch::ReplyScope scope(/*on_event_loop=*/true);
        orch::WorkerReply reply;
        reply.output = "done " + node;
        done(std::move(reply));
      }
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, Callback>> queue_;
  std::vector<std::thread::id> sent_on;
  bool stop_ = false;
  const bool inline_workers_;
  std::thread loop_;  // last: starts once the rest is made
};

std::filesystem::path temp_db(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("orch-async-write-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir / "orch.db";
}

// The run completed, after `calls` calls that each found their step record.
void expect_completed(orch::Engine& engine, const std::string& id, const CheckingDispatcher& dispatcher, int calls) {
  auto r = engine.wait(id, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kCompleted);
  CHECK(dispatcher.calls == calls);
  CHECK(dispatcher.calls_with_record == calls);
}

const char* const kTwoTasks = R"({"nodes": {"a": {"prompt_template": "a"}, "b": {"prompt_template": "b"}},
    "edges": [["__start__","a"],["a","b"],["b","__end__"]]})";

// Lets the run's writes through until the one that ends it is held.
void release_until_end(HeldStore& store) {
  for (;;) {
    REQUIRE(store.wait_held(1));
    const StoreBatch& next = store.oldest();
    if (next.run && orch::is_terminal(next.run->status)) return;
    store.release();
  }
}

// A run of `workflow` started on a HeldStore, its first write held.
struct HeldRun {
  explicit HeldRun(const char* workflow)
      : store(std::make_shared<HeldStore>(orch::new_memory_store())),
        dispatcher(std::make_shared<CheckingDispatcher>(store)),
        engine(orch::testing::make_engine(dispatcher, nullptr, store)) {
    auto started = engine->start_run(orch::testing::make_workflow(workflow), {});
    REQUIRE(started.ok());
    id = *started;
    REQUIRE(store->wait_held(1));
  }
  std::shared_ptr<HeldStore> store;
  std::shared_ptr<CheckingDispatcher> dispatcher;
  std::unique_ptr<orch::Engine> engine;
  std::string id;
};

}  // namespace

TEST_CASE("a worker call goes out once its step record is written, and the engine does not wait for the write", "[engine][async-write]") {
  HeldRun held(kTwoTasks);
  auto& [store, dispatcher, engine, id] = held;
  CHECK(store->oldest().steps.size() >= 1);
  // The write is held: no call has gone out, and the engine still answers.
  std::this_thread::sleep_for(50ms);
  CHECK(dispatcher->calls == 0);
  auto running = engine->get_run(id);
  REQUIRE(running.ok());
  CHECK(running->status == RunStatus::kRunning);
  store->release();  // node a's record: its call goes out and is answered
  REQUIRE(store->wait_held(1));
  store->release();  // node b's
  release_until_end(*store);
  store->release();  // the run's end
  expect_completed(*engine, id, *dispatcher, 2);
}

TEST_CASE("a send's worker calls go out behind one write of all their step records", "[engine][async-write]") {
  // One record per item's call (NullBoiler's <send>_<i> rows): written
  // together, not one write per call.
  HeldRun held(R"({"state_schema": {"items": {"type": "array"}},
    "nodes": {"init": {"type": "transform", "updates": {"items": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19]}},
              "fan": {"type": "send", "items_key": "state.items", "target_node": "work"},
              "work": {"prompt_template": "w {{item}}"}},
    "edges": [["__start__","init"],["init","fan"],["fan","__end__"]]})");
  auto& [store, dispatcher, engine, id] = held;
  size_t item_records = 0;
  for (const orch::StepRecord& step : store->oldest().steps) item_records += step.item_index >= 0 ? 1 : 0;
  CHECK(item_records == 20);
  std::this_thread::sleep_for(50ms);
  CHECK(store->held_count() == 1);
  CHECK(dispatcher->calls == 0);
  store->release();  // the records: all 20 calls go out and are answered
  for (int i = 0; i < 1000 && !engine->wait(id, 0ms).ok(); ++i) {
    if (store->wait_held(1)) store->release();
  }
  auto r = engine->wait(id, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kCompleted);
  CHECK(dispatcher->calls == 20);
  auto steps = store->list_steps(id);
  REQUIRE(steps.ok());
  size_t completed_items = 0;
  for (const orch::StepRecord& step : *steps) {
    if (step.item_index >= 0 && step.status == orch::StepStatus::kCompleted) ++completed_items;
  }
  CHECK(completed_items == 20);
}

TEST_CASE("a run's end is shown only once the store has it", "[engine][async-write]") {
  HeldRun held(R"({"nodes": {"a": {"prompt_template": "a"}}, "edges": [["__start__","a"],["a","__end__"]]})");
  auto& [store, dispatcher, engine, id] = held;
  std::atomic<int> ended_events{0};
  engine->subscribe(id, [&](const orch::EventRecord& ev) {
    if (ev.kind == "run.completed") ++ended_events;
  });
  store->release();  // a's record: its call goes out and is answered
  release_until_end(*store);
  // Held: readers still see the run running, as the store has it, and no
  // one hears of its end.
  auto shown = engine->get_run(id);
  REQUIRE(shown.ok());
  CHECK(shown->status == RunStatus::kRunning);
  auto waited = engine->wait(id, 50ms);
  CHECK(waited.status().code() == orch::StatusCode::kDeadlineExceeded);
  CHECK(ended_events == 0);
  store->release();
  auto r = engine->wait(id, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kCompleted);
  CHECK(ended_events == 1);
  auto stored = store->get_run(id);
  REQUIRE(stored.ok());
  CHECK(stored->status == RunStatus::kCompleted);
}

TEST_CASE("a run's end that the store refuses is never shown", "[engine][async-write]") {
  HeldRun held(R"({"nodes": {"a": {"prompt_template": "a"}}, "edges": [["__start__","a"],["a","__end__"]]})");
  auto& [store, dispatcher, engine, id] = held;
  store->release();
  release_until_end(*store);
  store->release(Status::internal("disk full"));
  // The store still has the run running (a restart resumes it); the engine
  // says what the store says, before and after it drops the ended context.
  for (int i = 0; i < 3; ++i) {
    auto shown = engine->get_run(id);
    REQUIRE(shown.ok());
    CHECK(shown->status == RunStatus::kRunning);
    std::this_thread::sleep_for(20ms);
  }
  CHECK(engine->wait(id, 50ms).status().code() == orch::StatusCode::kDeadlineExceeded);
}

TEST_CASE("a failed write of a superstep's checkpoint fails the run and sends no call", "[engine][async-write]") {
  HeldRun held(kTwoTasks);
  auto& [store, dispatcher, engine, id] = held;
  store->release();  // a's call goes out
  REQUIRE(store->wait_held(1));
  REQUIRE(store->oldest().checkpoint.has_value());  // a's checkpoint rides with b's record
  store->release(Status::internal("disk full"));
  auto r = engine->wait(id, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kFailed);
  CHECK(r->error.find("checkpoint failed: disk full") != std::string::npos);
  CHECK(dispatcher->calls == 1);  // b was never called
}

TEST_CASE("parallel worker calls of a superstep all wait for the one write that holds their records", "[engine][async-write]") {
  auto store = std::make_shared<HeldStore>(orch::new_memory_store());
  auto dispatcher = std::make_shared<CheckingDispatcher>(store);
  auto engine = orch::testing::make_engine(dispatcher, nullptr, store);
  auto wf = orch::testing::make_workflow(R"({"nodes": {"x": {"prompt_template": "x"}, "y": {"prompt_template": "y"},
      "z": {"prompt_template": "z"}, "join": {"type": "transform", "updates": {"joined": true}}},
    "edges": [["__start__","x"],["__start__","y"],["__start__","z"],["x","join"],["y","join"],["z","join"],
              ["join","__end__"]]})");
  auto id = engine->start_run(wf, {});
  REQUIRE(id.ok());
  REQUIRE(store->wait_held(1));
  std::this_thread::sleep_for(50ms);
  CHECK(dispatcher->calls == 0);
  store->release();
  // Whatever else the run writes is let through as it comes.
  for (int i = 0; i < 1000 && !engine->wait(*id, 0ms).ok(); ++i) {
    if (store->wait_held(1)) store->release();
  }
  expect_completed(*engine, *id, *dispatcher, 3);
}

TEST_CASE("on SQLite, runs of worker calls complete through the store's writer thread", "[engine][async-write][sqlite]") {
  auto path = temp_db("sqlite");
  auto opened = orch::open_sqlite_store(path.string());
  REQUIRE(opened.ok());
  std::shared_ptr<orch::Store> store = *opened;
  auto dispatcher = std::make_shared<CheckingDispatcher>(store);
  auto engine = orch::testing::make_engine(dispatcher, nullptr, store);
  auto wf = orch::testing::make_workflow(kTwoTasks);
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    orch::RunOptions options;
    options.input = orch::Value::object({{"i", i}});
    auto id = engine->start_run(wf, options);
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  for (const std::string& id : ids) {
    auto r = engine->wait(id, 30s);
    REQUIRE(r.ok());
    CHECK(r->status == RunStatus::kCompleted);
    auto steps = store->list_steps(id);
    REQUIRE(steps.ok());
    CHECK(steps->size() == 2);
  }
  CHECK(dispatcher->calls == 80);
  CHECK(dispatcher->calls_with_record == 80);
  engine.reset();
  store.reset();
  std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("a reply delivered on an event loop is handled there only when the store writes without waiting", "[engine][async-write]") {
  // Memory: writes without waiting, so b's call follows a's reply on the
  // loop. The same store behind a wrapper writes on the caller's thread:
  // a's reply then goes to an engine thread, and b's call with it. And a
  // dispatcher that runs its workers inside dispatch() is never called from
  // the loop.
  for (int variant = 0; variant < 3; ++variant) {
    const bool wrapped = variant == 1, inline_workers = variant == 2;
    std::shared_ptr<orch::Store> store = orch::new_memory_store();
    if (wrapped) store = std::make_shared<orch::StoreWrapper>(store);
    CHECK(store->writes_without_waiting() == !wrapped);
    auto dispatcher = std::make_shared<LoopDispatcher>(inline_workers);
    auto engine = orch::testing::make_engine(dispatcher, nullptr, store);
    auto id = engine->start_run(orch::testing::make_workflow(kTwoTasks), {});
    REQUIRE(id.ok());
    auto r = engine->wait(*id, 10s);
    REQUIRE(r.ok());
    CHECK(r->status == RunStatus::kCompleted);
    auto sent = dispatcher->sent_threads();
    REQUIRE(sent.size() == 2);
    CHECK(sent[0] != dispatcher->loop_id());  // a: from the run's start
    CHECK((sent[1] == dispatcher->loop_id()) == (variant == 0));
    engine.reset();
  }
}

namespace {
// Answers every call at once except node z's, which waits for release_z().
class HoldZDispatcher : public orch::Dispatcher {
 public:
  void dispatch(const orch::WorkerRequest& request, Callback done) override {
    if (request.node_name == "z") {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = std::move(done);
      return;
    }
    orch::WorkerReply reply;
    reply.output = "done " + request.node_name;
    done(std::move(reply));
  }
  bool release_z() {
    Callback done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done = std::move(held_);
    }
    if (!done) return false;
    orch::WorkerReply reply;
    reply.output = "done z";
    done(std::move(reply));
    return true;
  }

 private:
  std::mutex mu_;
  Callback held_;
};
}  // namespace

TEST_CASE("finished parallel nodes are kept as pending writes while a sibling still runs", "[engine][async-write]") {
  auto store = orch::new_memory_store();
  auto dispatcher = std::make_shared<HoldZDispatcher>();
  auto engine = orch::testing::make_engine(dispatcher, nullptr, store);
  auto id = engine->start_run(orch::testing::make_workflow(R"({"nodes": {"x": {"prompt_template": "x"},
      "y": {"prompt_template": "y"}, "z": {"prompt_template": "z"}},
    "edges": [["__start__","x"],["__start__","y"],["__start__","z"],["x","__end__"],["y","__end__"],["z","__end__"]]})"),
                              {});
  REQUIRE(id.ok());
  // x and y answered, z not: their results are stored (a restart would not
  // call them again) though no checkpoint followed yet.
  std::vector<std::string> kept;
  for (int i = 0; i < 1000 && kept.size() < 2; ++i) {
    auto writes = store->list_pending_writes(*id);
    REQUIRE(writes.ok());
    kept.clear();
    for (const orch::PendingWrite& w : *writes) kept.push_back(w.node_name);
    if (kept.size() < 2) std::this_thread::sleep_for(10ms);
  }
  std::sort(kept.begin(), kept.end());
  CHECK(kept == std::vector<std::string>{"x", "y"});
  bool released = false;
  for (int i = 0; i < 1000 && !(released = dispatcher->release_z()); ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(released);
  auto r = engine->wait(*id, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == RunStatus::kCompleted);
}
