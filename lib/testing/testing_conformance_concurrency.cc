// SPDX-License-Identifier: MIT
// Conformance checks for use from many threads at once.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "testing/testing_conformance_support.h"

namespace orch::testing::conformance {
namespace {

// Runs body(t) on `threads` threads at once; a thrown exception becomes a
// failure instead of terminating the host's test program.
void run_threads(Checker& c, int threads, const std::function<void(int)>& body) {
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&c, &body, t] {
      try {
        body(t);
      } catch (const std::exception& e) {
        c.fail("thread " + std::to_string(t) + " threw: " + e.what());
      } catch (...) {
        c.fail("thread " + std::to_string(t) + " threw");
      }
    });
  }
  for (std::thread& th : pool) th.join();
}

EventRecord event_for(const std::string& run_id, int thread, int i) {
  EventRecord event;
  event.run_id = run_id;
  event.kind = "step.completed";
  event.data = Value::object({{"thread", thread}, {"i", i}});
  event.created_at_ms = 1700000000000 + i;
  return event;
}

// Every seq 1..count exactly once, in order.
void expect_gapless(Store& store, Checker& c, const std::string& run_id, int64_t count) {
  Result<std::vector<EventRecord>> events =
      store.list_events(run_id, 0, static_cast<size_t>(count) + 10);
  if (!c.expect_ok(events, "list_events(" + run_id + ")")) return;
  if (!c.expect(static_cast<int64_t>(events->size()) == count,
                run_id + ": " + std::to_string(events->size()) + " events stored, expected " +
                    std::to_string(count))) {
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (!c.expect((*events)[static_cast<size_t>(i)].seq == i + 1,
                  run_id + ": event " + std::to_string(i) + " has seq " +
                      std::to_string((*events)[static_cast<size_t>(i)].seq))) {
      return;
    }
  }
}

}  // namespace

void check_concurrent_events(Store& store, Checker& c, const StoreConformanceOptions& options) {
  const int threads = std::max(1, options.threads);
  const int per_thread = std::max(1, options.events_per_thread);

  // One run per thread: each sees 1, 2, 3, ... whatever the others do.
  for (int t = 0; t < threads; ++t) {
    if (!create(store, c, sample_run("own-" + std::to_string(t)))) return;
  }
  run_threads(c, threads, [&](int t) {
    const std::string run_id = "own-" + std::to_string(t);
    for (int i = 1; i <= per_thread; ++i) {
      Result<int64_t> seq = store.append_event(event_for(run_id, t, i));
      if (!c.expect_ok(seq, "append_event(" + run_id + ")")) return;
      if (!c.expect(*seq == i,
                    run_id + ": append " + std::to_string(i) + " got seq " + std::to_string(*seq)))
        return;
    }
  });
  for (int t = 0; t < threads; ++t)
    expect_gapless(store, c, "own-" + std::to_string(t), per_thread);

  // All threads on one run: the seqs handed out are unique and gapless.
  if (!create(store, c, sample_run("shared"))) return;
  std::vector<std::vector<int64_t>> seen(static_cast<size_t>(threads));
  run_threads(c, threads, [&](int t) {
    for (int i = 1; i <= per_thread; ++i) {
      Result<int64_t> seq = store.append_event(event_for("shared", t, i));
      if (!c.expect_ok(seq, "append_event(shared)")) return;
      seen[static_cast<size_t>(t)].push_back(*seq);
    }
  });
  std::vector<int64_t> all;
  for (const auto& s : seen) {
    c.expect(std::is_sorted(s.begin(), s.end()), "one thread's appends got decreasing seqs");
    all.insert(all.end(), s.begin(), s.end());
  }
  std::sort(all.begin(), all.end());
  const int64_t total = static_cast<int64_t>(threads) * per_thread;
  bool gapless = static_cast<int64_t>(all.size()) == total;
  for (size_t i = 0; gapless && i < all.size(); ++i)
    gapless = all[i] == static_cast<int64_t>(i) + 1;
  c.expect(gapless, "the seqs returned for one run by concurrent appends are not exactly 1.." +
                        std::to_string(total));
  expect_gapless(store, c, "shared", total);
}

void check_concurrent_runs(Store& store, Checker& c, const StoreConformanceOptions& options) {
  // Each thread drives its own run through the whole API while the others do
  // the same and list runs: nothing fails, nothing leaks between runs.
  const int threads = std::max(1, options.threads);
  const int steps = 15;
  run_threads(c, threads, [&](int t) {
    const std::string run_id = "busy-" + std::to_string(t);
    RunRecord run = sample_run(run_id);
    run.idempotency_key = "busy-key-" + std::to_string(t);
    if (!create(store, c, run)) return;
    Value state = Value::object({{"owner", t}, {"items", Value::array()}});
    for (int v = 0; v < steps; ++v) {
      state["items"].push_back(v);
      StepRecord step =
          sample_step(run_id, run_id + "-s" + std::to_string(v), "n" + std::to_string(v));
      c.expect_ok(store.put_step(step), "put_step(" + step.id + ")");
      c.expect_ok(store.put_pending_write({run_id, v, step.node_name, Value(v)}),
                  "put_pending_write");
      Checkpoint cp = sample_checkpoint(run_id, v, state);
      run.state = state;
      run.checkpoint_count = v + 1;
      c.expect_ok(store.commit_checkpoint(cp, run, false), "commit_checkpoint(" + cp.id + ")");
      c.expect_ok(store.list_runs({}), "list_runs");
    }
    Result<RunRecord> got = store.get_run(run_id);
    if (c.expect_ok(got, "get_run(" + run_id + ")")) c.same_run(run, *got, run_id);
    Result<std::vector<Checkpoint>> cps = store.list_checkpoints(run_id);
    if (c.expect_ok(cps, "list_checkpoints(" + run_id + ")") &&
        c.expect(cps->size() == static_cast<size_t>(steps),
                 run_id + ": wrong number of checkpoints")) {
      c.same_value(state, cps->back().state, run_id + " latest state");
      c.expect(cps->front().state["items"].size() == 1,
               run_id + ": first checkpoint state changed");
    }
    Result<std::vector<StepRecord>> listed = store.list_steps(run_id);
    if (c.expect_ok(listed, "list_steps(" + run_id + ")")) {
      c.expect(listed->size() == static_cast<size_t>(steps), run_id + ": wrong number of steps");
    }
    Result<RunRecord> by_key = store.find_run_by_idempotency_key(run.idempotency_key);
    if (c.expect_ok(by_key, "find_run_by_idempotency_key"))
      c.expect(by_key->id == run_id, "key finds another run");
  });
  Result<std::vector<RunRecord>> runs = store.list_runs({});
  if (c.expect_ok(runs, "list_runs after the threads")) {
    c.expect(runs->size() == static_cast<size_t>(threads),
             "list_runs after the threads: wrong count");
  }
}

void check_write_batch_async(Store& store, Checker& c, const StoreConformanceOptions& options) {
  // Each thread hands its run's batches over, mostly without waiting
  // (write_batch_async), every fourth with write_batch: each callback runs
  // once, in the order the batches were handed over, with the events' seqs
  // set, and a write_batch returns only after the callbacks of the batches
  // before it.
  const int threads = std::max(1, options.threads);
  const int batches = 24;
  std::mutex mu;
  std::condition_variable all_done;
  int pending = 0;
  run_threads(c, threads, [&](int t) {
    const std::string run_id = "async-" + std::to_string(t);
    if (!create(store, c, sample_run(run_id))) return;
    auto called = std::make_shared<std::vector<int64_t>>();  // seqs, in callback order (under mu)
    for (int i = 0; i < batches; ++i) {
      StoreBatch batch;
      batch.steps.push_back(sample_step(run_id, run_id + "-s" + std::to_string(i), "n"));
      batch.events.push_back(event_for(run_id, t, i));
      if (i % 4 == 3) {
        c.expect_ok(store.write_batch(batch), "write_batch between async batches");
        std::lock_guard<std::mutex> lock(mu);
        c.expect(called->size() == static_cast<size_t>(i),
                 run_id + ": write_batch returned before the callbacks of the batches handed over before it");
        called->push_back(batch.events[0].seq);
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        ++pending;
      }
      store.write_batch_async(std::move(batch), [&, called, run_id](Status status, StoreBatch& written) {
        c.expect_ok(status, "write_batch_async(" + run_id + ")");
        std::lock_guard<std::mutex> lock(mu);
        called->push_back(written.events.empty() ? -1 : written.events[0].seq);
        --pending;
        all_done.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    if (!all_done.wait_for(lock, std::chrono::seconds(60),
                           [&] { return called->size() == static_cast<size_t>(batches); })) {
      c.fail(run_id + ": write_batch_async callbacks missing after 60 s");
      return;
    }
    for (size_t i = 0; i < called->size(); ++i) {
      c.expect((*called)[i] == static_cast<int64_t>(i) + 1,
               run_id + ": batch " + std::to_string(i) + " was written out of order (seq " +
                   std::to_string((*called)[i]) + ")");
    }
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!all_done.wait_for(lock, std::chrono::seconds(60), [&] { return pending == 0; })) {
      c.fail("write_batch_async callbacks missing after 60 s");
      return;
    }
  }
  // A batch for a run that does not exist fails alone.
  StoreBatch missing;
  missing.events.push_back(event_for("async-missing", 0, 0));
  std::promise<Status> failed;
  store.write_batch_async(std::move(missing), [&failed](Status status, StoreBatch&) { failed.set_value(status); });
  std::future<Status> result = failed.get_future();
  if (c.expect(result.wait_for(std::chrono::seconds(60)) == std::future_status::ready,
               "write_batch_async of a missing run's batch calls back")) {
    c.expect(!result.get().ok(), "write_batch_async of a missing run's batch fails");
  }
  for (int t = 0; t < threads; ++t) {
    const std::string run_id = "async-" + std::to_string(t);
    Result<std::vector<EventRecord>> events = store.list_events(run_id, 0, 1000);
    if (c.expect_ok(events, "list_events(" + run_id + ")")) {
      c.expect(events->size() == static_cast<size_t>(batches), run_id + ": every batch's event is stored");
    }
    Result<std::vector<StepRecord>> steps = store.list_steps(run_id);
    if (c.expect_ok(steps, "list_steps(" + run_id + ")")) {
      c.expect(steps->size() == static_cast<size_t>(batches), run_id + ": every batch's step is stored");
    }
  }
}

}  // namespace orch::testing::conformance
