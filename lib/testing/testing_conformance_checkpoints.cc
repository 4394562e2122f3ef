// SPDX-License-Identifier: MIT
// Conformance checks for checkpoints: commit, read back (every checkpoint's
// full state), truncate, and the atomicity of commit_checkpoint.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "testing/testing_conformance_support.h"

namespace orch::testing::conformance {
namespace {

// The state after step `i` of a run whose state changes in every way a store
// might encode differently: a list that grows, scalars replaced, a nested
// object edited, a key removed and re-added, an int turning into a double, a
// list that shrinks, and once the whole state replaced.
Value evolve(const Value& previous, int i) {
  Value state = previous;
  state["counter"] = i;
  Value item = Value::object({{"step", i}, {"text", "line " + std::to_string(i)}});
  if (i == 20) {
    state["log"] = Value::array({item});  // shrinks: not an append
  } else {
    state["log"].push_back(item);
  }
  state["last"] = "output of step " + std::to_string(i);
  state["ctx"]["depth"] = i % 4;
  if (i % 5 == 0) state["ctx"]["seen"].push_back(i);
  if (i == 7) state.mutable_object().erase("last");
  if (i == 9) state["ratio"] = 1;
  if (i == 10) state["ratio"] = 1.0;  // same number, different JSON type
  if (i == 11) state["ratio"] = -0.0;
  if (i == 15)
    state["nested"] = Value::object({{"a", Value::object({{"b", Value::array({1, 2})}})}});
  if (i == 16) state["nested"]["a"]["b"].push_back(3);
  if (i == 17) state["nested"]["a"]["c"] = nullptr;
  if (i == 25)
    state = Value::object({{"fresh", true}, {"log", Value::array()}, {"ctx", Value::object()}});
  return state;
}

// Commits `cp` with a run record that reflects it; returns that record.
RunRecord commit(Store& store, Checker& c, RunRecord run, const Checkpoint& cp, bool sync) {
  run.status = RunStatus::kRunning;
  run.state = cp.state;
  run.checkpoint_count = cp.version + 1;
  run.updated_at_ms = cp.created_at_ms;
  c.expect_ok(store.commit_checkpoint(cp, run, sync), "commit_checkpoint(" + cp.id + ")");
  return run;
}

void expect_all(Store& store, Checker& c, const std::string& run_id,
                const std::vector<Checkpoint>& expected, const std::string& when) {
  Result<std::vector<Checkpoint>> listed = store.list_checkpoints(run_id);
  if (c.expect_ok(listed, "list_checkpoints " + when) &&
      c.expect(listed->size() == expected.size(),
               "list_checkpoints " + when + " returned " + std::to_string(listed->size()) +
                   ", expected " + std::to_string(expected.size()))) {
    for (size_t i = 0; i < expected.size(); ++i) {
      c.same_checkpoint(expected[i], (*listed)[i],
                        "list_checkpoints " + when + "[" + std::to_string(i) + "]");
    }
  }
  for (const Checkpoint& cp : expected) {
    Result<Checkpoint> got = store.get_checkpoint(cp.id);
    if (c.expect_ok(got, "get_checkpoint(" + cp.id + ") " + when)) {
      c.same_checkpoint(cp, *got, "get_checkpoint(" + cp.id + ") " + when);
    }
  }
  if (!expected.empty()) {
    Result<Checkpoint> latest = store.latest_checkpoint(run_id);
    if (c.expect_ok(latest, "latest_checkpoint " + when)) {
      c.same_checkpoint(expected.back(), *latest, "latest_checkpoint " + when);
    }
  }
}

}  // namespace

void check_checkpoints(Store& store, Checker& c) {
  RunRecord run = sample_run("cp-run");
  if (!create(store, c, run)) return;
  c.expect_code(store.latest_checkpoint("cp-run"), StatusCode::kNotFound,
                "latest_checkpoint before any commit");
  Result<std::vector<Checkpoint>> none = store.list_checkpoints("cp-run");
  if (c.expect_ok(none, "list_checkpoints before any commit"))
    c.expect(none->empty(), "a new run has checkpoints");

  std::vector<Checkpoint> expected;
  Value state = Value::object();
  for (int i = 0; i < 40; ++i) {
    state = evolve(state, i);
    Checkpoint cp = sample_checkpoint("cp-run", i, state);
    if (i == 0) cp.metadata = Value();  // NullBoiler's __init__ carries null metadata
    if (i % 3 == 0 && i > 0)
      cp.metadata.set("route_results", Value::object({{"router", i % 2 == 0 ? "yes" : "no"}}));
    run = commit(store, c, run, cp, i % 7 == 3);
    expected.push_back(cp);
    // Each commit is visible at once, run record included.
    Result<Checkpoint> latest = store.latest_checkpoint("cp-run");
    if (c.expect_ok(latest, "latest_checkpoint after commit " + std::to_string(i))) {
      c.same_checkpoint(cp, *latest, "latest_checkpoint after commit " + std::to_string(i));
    }
    Result<RunRecord> got = store.get_run("cp-run");
    if (c.expect_ok(got, "get_run after commit"))
      c.same_run(run, *got, "run after commit " + std::to_string(i));
  }
  expect_all(store, c, "cp-run", expected, "after 40 commits");

  // The caller's values are not tied to the store's: changing them after the
  // commit changes nothing stored.
  expected.back().state["mutated_after_commit"] = true;
  Result<Checkpoint> last = store.get_checkpoint(expected.back().id);
  if (c.expect_ok(last, "get_checkpoint(last)")) {
    c.expect(last->state.find("mutated_after_commit") == nullptr,
             "a stored checkpoint changed with the caller's copy");
  }
  expected.back().state.mutable_object().erase("mutated_after_commit");

  c.expect_code(store.get_checkpoint("no-such-checkpoint"), StatusCode::kNotFound,
                "get_checkpoint(no-such-checkpoint)");
  c.expect_code(store.latest_checkpoint("no-such-run"), StatusCode::kNotFound,
                "latest_checkpoint(no-such-run)");
  c.expect_code(store.list_checkpoints("no-such-run"), StatusCode::kNotFound,
                "list_checkpoints(no-such-run)");

  // A commit for a run that does not exist stores nothing.
  RunRecord ghost = sample_run("ghost");
  Checkpoint ghost_cp = sample_checkpoint("ghost", 0, Value::object());
  c.expect_code(store.commit_checkpoint(ghost_cp, ghost, false), StatusCode::kNotFound,
                "commit_checkpoint(ghost run)");
  c.expect_code(store.get_checkpoint(ghost_cp.id), StatusCode::kNotFound,
                "get_checkpoint of a refused commit");
  c.expect_code(store.get_run("ghost"), StatusCode::kNotFound,
                "a refused commit must not create its run");

  // Checkpoints of two runs do not mix.
  RunRecord other = sample_run("cp-other");
  if (create(store, c, other)) {
    Checkpoint cp = sample_checkpoint("cp-other", 0, Value::object({{"other", true}}));
    commit(store, c, other, cp, false);
    expect_all(store, c, "cp-other", {cp}, "of the second run");
    expect_all(store, c, "cp-run", expected, "after another run committed");
  }
}

void check_truncate_checkpoints(Store& store, Checker& c) {
  RunRecord run = sample_run("trunc");
  if (!create(store, c, run)) return;
  std::vector<Checkpoint> expected;
  Value state = Value::object();
  for (int i = 0; i < 30; ++i) {
    state = evolve(state, i);
    Checkpoint cp = sample_checkpoint("trunc", i, state);
    run = commit(store, c, run, cp, false);
    expected.push_back(cp);
  }
  c.expect_ok(store.put_pending_write({"trunc", 30, "a", Value(1)}),
              "put_pending_write before truncate");

  // Replay from version 12: the later checkpoints go; the earlier ones still
  // read back whole.
  if (!c.expect_ok(store.truncate_checkpoints("trunc", 12), "truncate_checkpoints(12)")) return;
  std::vector<Checkpoint> removed(expected.begin() + 13, expected.end());
  expected.resize(13);
  expect_all(store, c, "trunc", expected, "after truncate(12)");
  for (const Checkpoint& cp : removed) {
    c.expect_code(store.get_checkpoint(cp.id), StatusCode::kNotFound,
                  "get_checkpoint of truncated " + cp.id);
  }

  // The run goes on from version 12 with different states.
  state = expected.back().state;
  for (int i = 13; i < 26; ++i) {
    state = evolve(state, i + 100);
    state["branch"] = "replayed";
    Checkpoint cp = sample_checkpoint("trunc", i, state);
    cp.id += "-replayed";
    run = commit(store, c, run, cp, false);
    expected.push_back(cp);
  }
  expect_all(store, c, "trunc", expected, "after replaying on");

  c.expect_ok(store.truncate_checkpoints("trunc", 1000), "truncate_checkpoints above the latest");
  expect_all(store, c, "trunc", expected, "after a truncate that removes nothing");

  c.expect_ok(store.truncate_checkpoints("trunc", -1), "truncate_checkpoints(-1)");
  expect_all(store, c, "trunc", {}, "after truncating everything");
  c.expect_code(store.latest_checkpoint("trunc"), StatusCode::kNotFound,
                "latest_checkpoint after truncating everything");
  Checkpoint restart = sample_checkpoint("trunc", 0, Value::object({{"restarted", true}}));
  restart.id = "trunc-restart";
  commit(store, c, run, restart, false);
  expect_all(store, c, "trunc", {restart}, "after starting over");

  c.expect_code(store.truncate_checkpoints("no-such-run", 0), StatusCode::kNotFound,
                "truncate_checkpoints(no-such-run)");
}

void check_long_checkpoint_chain(Store& store, Checker& c, int length) {
  // A state whose list grows by one item per step, the shape incremental
  // stores optimize: every checkpoint must still read back whole.
  RunRecord run = sample_run("chain");
  if (!create(store, c, run)) return;
  std::vector<Checkpoint> expected;
  Value state = Value::object({{"items", Value::array()}, {"n", 0}});
  for (int i = 0; i < length; ++i) {
    state["items"].push_back(
        Value::object({{"i", i}, {"text", "item number " + std::to_string(i)}}));
    state["n"] = i;
    Checkpoint cp = sample_checkpoint("chain", i, state);
    run = commit(store, c, run, cp, false);
    expected.push_back(cp);
  }
  expect_all(store, c, "chain", expected, "of a long chain");
}

void check_commit_atomicity(Store& store, Checker& c) {
  RunRecord run = sample_run("atomic");
  RunRecord other = sample_run("atomic-other");
  if (!create(store, c, run) || !create(store, c, other)) return;

  // A commit drops the run's pending writes (and only that run's).
  c.expect_ok(store.put_pending_write({"atomic", 0, "a", Value(1)}), "put_pending_write(atomic)");
  c.expect_ok(store.put_pending_write({"atomic", 0, "b", Value(2)}), "put_pending_write(atomic)");
  c.expect_ok(store.put_pending_write({"atomic-other", 0, "z", Value(3)}),
              "put_pending_write(atomic-other)");
  run = commit(store, c, run, sample_checkpoint("atomic", 0, Value::object({{"a", 1}, {"b", 2}})),
               false);
  auto writes = store.list_pending_writes("atomic");
  if (c.expect_ok(writes, "list_pending_writes after commit")) {
    c.expect(writes->empty(), "commit_checkpoint must drop the run's pending writes");
  }
  writes = store.list_pending_writes("atomic-other");
  if (c.expect_ok(writes, "list_pending_writes(atomic-other)")) {
    c.expect(writes->size() == 1, "commit_checkpoint dropped another run's pending writes");
  }

  // A reader that sees checkpoint v must then see a run record at least as
  // new: checkpoint and run record are written together.
  constexpr int kCommits = 60;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    try {
      while (!done.load()) {
        Result<Checkpoint> latest = store.latest_checkpoint("atomic");
        if (!latest.ok()) continue;
        Result<RunRecord> now = store.get_run("atomic");
        if (!c.expect_ok(now, "get_run while committing")) return;
        c.expect(now->checkpoint_count >= latest->version + 1,
                 "saw checkpoint " + std::to_string(latest->version) +
                     " but a run record with checkpoint_count " +
                     std::to_string(now->checkpoint_count));
        if (latest->version >= 1) {
          c.expect(latest->state["step"].get_int(-1) == latest->version,
                   "a checkpoint read back with another's state");
        }
      }
    } catch (const std::exception& e) {
      c.fail(std::string("reader thread threw: ") + e.what());
    }
  });
  for (int v = 1; v <= kCommits; ++v) {
    c.expect_ok(store.put_pending_write({"atomic", v, "a", Value(v)}),
                "put_pending_write while committing");
    run =
        commit(store, c, run, sample_checkpoint("atomic", v, Value::object({{"step", v}})), false);
  }
  done = true;
  reader.join();
  writes = store.list_pending_writes("atomic");
  if (c.expect_ok(writes, "list_pending_writes after the commits"))
    c.expect(writes->empty(), "pending writes left over");
}

}  // namespace orch::testing::conformance
