// SPDX-License-Identifier: MIT
#include "support/fencing_scenario.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "orch/engine.h"
#include "orch/event_kinds.h"
#include "orch/workflow.h"
#include "support/engine_fixture.h"

namespace orch::testing {
namespace {

using namespace std::chrono_literals;

// Counts engine A's write_batch results.
class RecordingStore : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status write_batch(StoreBatch& batch) override {
    Status s = target().write_batch(batch);
    if (lease_lost(s)) {
      refused.fetch_add(1);
    } else if (s.ok() && taken_over.load()) {
      accepted_after_takeover.fetch_add(1);
    }
    return s;
  }
  std::atomic<int> refused{0};
  std::atomic<int> accepted_after_takeover{0};
  std::atomic<bool> taken_over{false};
};

struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool released = false;
};

constexpr const char* kWorkflow = R"({"id": "fenced-wf", "nodes": {"slow": {}, "after": {}},
  "edges": [["__start__","slow"],["slow","after"],["after","__end__"]]})";

// Polls `done` for up to `limit` (no assertion on time: a slow machine only waits longer).
template <typename Pred>
bool eventually(Pred done, std::chrono::milliseconds limit = 30s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

FencingOutcome run_fencing_scenario(std::shared_ptr<Store> store_a, std::shared_ptr<Store> store_b) {
  FencingOutcome out;
  std::atomic<int> slow_a{0}, slow_b{0}, after_a{0}, after_b{0};
  auto gate = std::make_shared<Gate>();
  auto wf_a = make_workflow(kWorkflow, {{"slow",
                                         [&slow_a, gate](const NodeCall&) -> Result<NodeOutput> {
                                           ++slow_a;
                                           std::unique_lock<std::mutex> lock(gate->mu);
                                           gate->entered = true;
                                           gate->cv.notify_all();
                                           gate->cv.wait_for(lock, 60s, [&] { return gate->released; });
                                           return NodeOutput(Value::object({{"by", "a"}}));
                                         }},
                                        {"after", [&after_a](const NodeCall&) -> Result<NodeOutput> {
                                           ++after_a;
                                           return NodeOutput(Value::object());
                                         }}});
  auto wf_b = make_workflow(kWorkflow, {{"slow",
                                         [&slow_b](const NodeCall&) -> Result<NodeOutput> {
                                           ++slow_b;
                                           return NodeOutput(Value::object({{"by", "b"}}));
                                         }},
                                        {"after", [&after_b](const NodeCall&) -> Result<NodeOutput> {
                                           ++after_b;
                                           return NodeOutput(Value::object());
                                         }}});
  auto recorder = std::make_shared<RecordingStore>(store_a);

  EngineOptions a_options;
  a_options.store = recorder;
  a_options.owner_id = "engine-a";
  a_options.lease_ms = 0;  // A never holds a live lease: as if it had stopped renewing
  a_options.workflow_resolver = [wf_a](const std::string&) -> Result<std::shared_ptr<const Workflow>> { return wf_a; };
  EngineOptions b_options;
  b_options.store = store_b;
  b_options.owner_id = "engine-b";
  b_options.lease_ms = 600000;
  b_options.workflow_resolver = [wf_b](const std::string&) -> Result<std::shared_ptr<const Workflow>> { return wf_b; };
  auto engine_a = Engine::open(a_options);
  auto engine_b = Engine::open(b_options);
  if (!engine_a.ok() || !engine_b.ok()) return out;

  RunOptions run_options;
  run_options.workflow_id = "fenced-wf";
  auto run = (*engine_a)->start_run(wf_a, run_options);
  if (!run.ok()) return out;
  {
    std::unique_lock<std::mutex> lock(gate->mu);
    out.started = gate->cv.wait_for(lock, 30s, [&] { return gate->entered; });
  }
  if (out.started) {
    recorder->taken_over = true;
    auto taken = (*engine_b)->take_over_expired_runs(10);
    out.taken_over = taken.ok() ? *taken : 0;
    (void)(*engine_b)->wait(*run, 30s);
  }
  {
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->released = true;
    gate->cv.notify_all();
  }
  // A wakes up, tries to write its node's result, is refused, drops the run.
  out.a_dropped_run = eventually([&] { return recorder->refused.load() > 0 && (*engine_a)->active_runs() == 0; });
  engine_a->reset();  // joins A's threads: nothing of A's is still in flight below
  engine_b->reset();

  out.slow_on_a = slow_a;
  out.slow_on_b = slow_b;
  out.after_on_a = after_a;
  out.after_on_b = after_b;
  out.refused_writes_a = recorder->refused;
  out.accepted_writes_a_after_takeover = recorder->accepted_after_takeover;
  auto record = store_b->get_run(*run);
  if (record.ok()) out.final_status = record->status;
  auto events = store_b->list_events(*run, 0, 10000);
  if (events.ok()) {
    for (const EventRecord& e : *events) {
      if (e.kind == event_kind::kRunCompleted) ++out.completed_events;
      if (e.kind == event_kind::kTaskResult && e.data["name"].get_string("") == "slow") ++out.slow_results;
    }
  }
  return out;
}

}  // namespace orch::testing
