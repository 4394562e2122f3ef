// SPDX-License-Identifier: MIT
// Conformance checks for runs, leases, pending writes, steps, events and
// workflows.
#include <string>
#include <vector>

#include "testing/testing_conformance_support.h"

namespace orch::testing::conformance {
namespace {

std::vector<std::string> ids_of(const std::vector<RunRecord>& runs) {
  std::vector<std::string> ids;
  for (const RunRecord& r : runs) ids.push_back(r.id);
  return ids;
}

std::string join(const std::vector<std::string>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i > 0 ? "," : "") + ids[i];
  return out + "]";
}

void expect_listed(Store& store, Checker& c, const RunFilter& filter,
                   const std::vector<std::string>& expected, const std::string& what) {
  Result<std::vector<RunRecord>> runs = store.list_runs(filter);
  if (!c.expect_ok(runs, "list_runs(" + what + ")")) return;
  std::vector<std::string> ids = ids_of(*runs);
  c.expect(ids == expected,
           "list_runs(" + what + "): expected " + join(expected) + ", got " + join(ids));
}

}  // namespace

void check_runs_crud(Store& store, Checker& c) {
  RunRecord run = sample_run("run-crud");
  if (!create(store, c, run)) return;
  Result<RunRecord> got = store.get_run(run.id);
  if (c.expect_ok(got, "get_run after create")) c.same_run(run, *got, "get_run after create");
  c.expect_code(store.create_run(run), StatusCode::kAlreadyExists, "create_run with a taken id");
  c.expect_code(store.get_run("no-such-run"), StatusCode::kNotFound, "get_run(no-such-run)");

  run.status = RunStatus::kFailed;
  run.state = Value::object({{"messages", Value::array({"hi", "there"})}, {"score", 2.5}});
  run.error = "node a failed: boom";
  run.ended_at_ms = 1700000009999;
  run.checkpoint_count = 4;
  run.recoveries = 2;
  run.workflow = Value();
  run.host_data = Value();
  c.expect_ok(store.update_run(run), "update_run");
  got = store.get_run(run.id);
  if (c.expect_ok(got, "get_run after update")) c.same_run(run, *got, "get_run after update");
  c.expect_code(store.update_run(sample_run("no-such-run")), StatusCode::kNotFound,
                "update_run(no-such-run)");
  c.expect_code(store.get_run("no-such-run"), StatusCode::kNotFound,
                "get_run after update_run(no-such-run)");
}

void check_idempotency_keys(Store& store, Checker& c) {
  RunRecord first = sample_run("idem-first");
  first.idempotency_key = "key-1";
  if (!create(store, c, first)) return;
  RunRecord second = sample_run("idem-second");
  second.idempotency_key = "key-1";
  Status dup = store.create_run(second);
  if (c.expect_code(dup, StatusCode::kAlreadyExists, "create_run with a taken idempotency key")) {
    c.expect(
        dup.message() == first.id,
        "the AlreadyExists message must be the existing run's id, got \"" + dup.message() + "\"");
  }
  c.expect_code(store.get_run(second.id), StatusCode::kNotFound,
                "the run refused for its key must not exist");

  Result<RunRecord> found = store.find_run_by_idempotency_key("key-1");
  if (c.expect_ok(found, "find_run_by_idempotency_key(key-1)"))
    c.same_run(first, *found, "found by key");
  c.expect_code(store.find_run_by_idempotency_key("key-unused"), StatusCode::kNotFound,
                "find_run_by_idempotency_key(key-unused)");

  // An empty key means "none": keyless runs never conflict and are not found by "".
  create(store, c, sample_run("idem-keyless-1"));
  create(store, c, sample_run("idem-keyless-2"));
  c.expect_code(store.find_run_by_idempotency_key(""), StatusCode::kNotFound,
                "find_run_by_idempotency_key(\"\")");

  RunRecord other = sample_run("idem-other");
  other.idempotency_key = "key-2";
  create(store, c, other);
  found = store.find_run_by_idempotency_key("key-2");
  if (c.expect_ok(found, "find_run_by_idempotency_key(key-2)"))
    c.expect(found->id == other.id, "key-2 finds its run");
}

void check_list_runs(Store& store, Checker& c) {
  // r0..r11, created in order. status: running when i % 3 == 0; workflow:
  // wf-odd / wf-even; parent: parent-x for r0..r3.
  for (int i = 0; i < 12; ++i) {
    RunRecord run = sample_run("r" + std::to_string(i));
    run.status = i % 3 == 0 ? RunStatus::kRunning : RunStatus::kPending;
    run.workflow_id = i % 2 == 1 ? "wf-odd" : "wf-even";
    run.parent_run_id = i < 4 ? "parent-x" : "";
    run.parent_node = i < 4 ? "sub" : "";
    run.created_at_ms = 1700000000000 + i;
    if (!create(store, c, run)) return;
  }
  auto ids = [](std::initializer_list<int> numbers) {
    std::vector<std::string> out;
    for (int n : numbers) out.push_back("r" + std::to_string(n));
    return out;
  };
  RunFilter all;
  expect_listed(store, c, all, ids({11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}), "all, newest first");
  RunFilter page;
  page.limit = 5;
  expect_listed(store, c, page, ids({11, 10, 9, 8, 7}), "limit 5");
  page.offset = 5;
  expect_listed(store, c, page, ids({6, 5, 4, 3, 2}), "limit 5 offset 5");
  page.offset = 10;
  expect_listed(store, c, page, ids({1, 0}), "limit 5 offset 10");
  page.offset = 20;
  expect_listed(store, c, page, {}, "offset past the end");
  RunFilter none;
  none.limit = 0;
  expect_listed(store, c, none, {}, "limit 0");

  RunFilter running;
  running.status = RunStatus::kRunning;
  expect_listed(store, c, running, ids({9, 6, 3, 0}), "status running");
  RunFilter odd;
  odd.workflow_id = "wf-odd";
  expect_listed(store, c, odd, ids({11, 9, 7, 5, 3, 1}), "workflow wf-odd");
  odd.offset = 1;
  odd.limit = 2;
  expect_listed(store, c, odd, ids({9, 7}), "workflow wf-odd limit 2 offset 1");
  RunFilter children;
  children.parent_run_id = "parent-x";
  expect_listed(store, c, children, ids({3, 2, 1, 0}), "parent parent-x");
  RunFilter both;
  both.status = RunStatus::kRunning;
  both.workflow_id = "wf-odd";
  expect_listed(store, c, both, ids({9, 3}), "status running and workflow wf-odd");
  both.workflow_id.clear();
  both.parent_run_id = "parent-x";
  expect_listed(store, c, both, ids({3, 0}), "status running and parent parent-x");
  RunFilter missing;
  missing.workflow_id = "wf-none";
  expect_listed(store, c, missing, {}, "workflow wf-none");

  // An update changes what filters match, not the order.
  Result<RunRecord> r11 = store.get_run("r11");
  if (!c.expect_ok(r11, "get_run(r11)")) return;
  r11->status = RunStatus::kCompleted;
  c.expect_ok(store.update_run(*r11), "update_run(r11)");
  RunFilter completed;
  completed.status = RunStatus::kCompleted;
  expect_listed(store, c, completed, ids({11}), "status completed after update");
  page.offset = 0;
  page.limit = 2;
  expect_listed(store, c, page, ids({11, 10}), "limit 2 after update");
}

void check_delete_run(Store& store, Checker& c) {
  // Two runs with everything a run can own; one is deleted, the other must
  // not notice.
  for (const std::string id : {"victim", "bystander"}) {
    RunRecord run = sample_run(id);
    run.idempotency_key = "key-" + id;
    if (!create(store, c, run)) return;
    Checkpoint cp = sample_checkpoint(id, 0, Value::object({{"x", 1}}));
    run.checkpoint_count = 1;
    c.expect_ok(store.commit_checkpoint(cp, run, false), "commit_checkpoint(" + id + ")");
    c.expect_ok(store.put_step(sample_step(id, id + "-step", "a")), "put_step(" + id + ")");
    EventRecord event;
    event.run_id = id;
    event.kind = "run.started";
    c.expect_ok(store.append_event(event), "append_event(" + id + ")");
    c.expect_ok(store.put_pending_write({id, 1, "a", Value::object({{"ok", true}})}),
                "put_pending_write(" + id + ")");
  }

  if (!c.expect_ok(store.delete_run("victim"), "delete_run(victim)")) return;
  c.expect_code(store.get_run("victim"), StatusCode::kNotFound, "get_run after delete");
  c.expect_code(store.get_checkpoint("victim-cp0"), StatusCode::kNotFound,
                "get_checkpoint after delete");
  c.expect_code(store.get_step("victim-step"), StatusCode::kNotFound, "get_step after delete");
  c.expect_code(store.latest_checkpoint("victim"), StatusCode::kNotFound,
                "latest_checkpoint after delete");
  c.expect_code(store.list_checkpoints("victim"), StatusCode::kNotFound,
                "list_checkpoints after delete");
  c.expect_code(store.list_steps("victim"), StatusCode::kNotFound, "list_steps after delete");
  c.expect_code(store.list_events("victim", 0, 100), StatusCode::kNotFound,
                "list_events after delete");
  c.expect_code(store.list_pending_writes("victim"), StatusCode::kNotFound,
                "list_pending_writes after delete");
  c.expect_code(store.find_run_by_idempotency_key("key-victim"), StatusCode::kNotFound,
                "find_run_by_idempotency_key after delete");
  c.expect_code(store.delete_run("victim"), StatusCode::kNotFound, "delete_run twice");
  for (const RunRecord& r : store.list_runs({}).value_or(std::vector<RunRecord>{})) {
    c.expect(r.id != "victim", "list_runs still lists the deleted run");
  }

  // A new run under the same id and key starts empty: nothing was left behind.
  RunRecord again = sample_run("victim");
  again.idempotency_key = "key-victim";
  if (create(store, c, again)) {
    auto cps = store.list_checkpoints("victim");
    if (c.expect_ok(cps, "list_checkpoints(recreated)"))
      c.expect(cps->empty(), "recreated run has old checkpoints");
    auto steps = store.list_steps("victim");
    if (c.expect_ok(steps, "list_steps(recreated)"))
      c.expect(steps->empty(), "recreated run has old steps");
    auto events = store.list_events("victim", 0, 100);
    if (c.expect_ok(events, "list_events(recreated)"))
      c.expect(events->empty(), "recreated run has old events");
    auto writes = store.list_pending_writes("victim");
    if (c.expect_ok(writes, "list_pending_writes(recreated)")) {
      c.expect(writes->empty(), "recreated run has old pending writes");
    }
    EventRecord event;
    event.run_id = "victim";
    event.kind = "run.started";
    Result<int64_t> seq = store.append_event(event);
    if (c.expect_ok(seq, "append_event(recreated)"))
      c.expect(*seq == 1, "a recreated run's events start at seq 1");
  }

  auto cps = store.list_checkpoints("bystander");
  if (c.expect_ok(cps, "list_checkpoints(bystander)"))
    c.expect(cps->size() == 1, "bystander lost its checkpoint");
  c.expect_ok(store.get_step("bystander-step"), "get_step(bystander-step)");
  auto events = store.list_events("bystander", 0, 100);
  if (c.expect_ok(events, "list_events(bystander)"))
    c.expect(events->size() == 1, "bystander lost its event");
  auto writes = store.list_pending_writes("bystander");
  if (c.expect_ok(writes, "list_pending_writes(bystander)")) {
    c.expect(writes->size() == 1, "bystander lost its pending write");
  }
  c.expect_ok(store.find_run_by_idempotency_key("key-bystander"),
              "find_run_by_idempotency_key(key-bystander)");
}

void check_leases(Store& store, Checker& c) {
  if (!create(store, c, sample_run("leased"))) return;
  c.expect_ok(store.claim_run("leased", "engine-a", 60000), "claim_run by its first owner");
  c.expect_ok(store.claim_run("leased", "engine-a", 60000), "claim_run again by the same owner");
  c.expect_ok(store.create_claimed_run(sample_run("leased-at-creation"), "engine-a", 60000),
              "create_claimed_run");
  c.expect_ok(store.get_run("leased-at-creation"), "get_run after create_claimed_run");
  c.expect_ok(store.claim_run("leased-at-creation", "engine-a", 60000),
              "claim_run by the owner that created it claimed");
  c.expect(store.create_claimed_run(sample_run("leased-at-creation"), "engine-b", 60000).code() ==
               StatusCode::kAlreadyExists,
           "create_claimed_run of a taken id must fail with AlreadyExists");
}

void check_pending_writes(Store& store, Checker& c) {
  if (!create(store, c, sample_run("writes"))) return;
  if (!create(store, c, sample_run("writes-other"))) return;
  std::vector<PendingWrite> expected = {
      {"writes", 1, "a", Value::object({{"state_updates", Value::object({{"x", 1}})}})},
      {"writes", 1, "b", Value::array({1, 2.5, "three"})},
      {"writes", 2, "c", Value()},
  };
  for (const PendingWrite& w : expected)
    c.expect_ok(store.put_pending_write(w), "put_pending_write(" + w.node_name + ")");
  c.expect_ok(store.put_pending_write({"writes-other", 1, "z", Value(true)}),
              "put_pending_write(writes-other)");
  Result<std::vector<PendingWrite>> got = store.list_pending_writes("writes");
  if (c.expect_ok(got, "list_pending_writes") &&
      c.expect(got->size() == expected.size(),
               "list_pending_writes returned " + std::to_string(got->size()) + " writes")) {
    for (size_t i = 0; i < expected.size(); ++i) {
      const std::string at = "pending write " + std::to_string(i);
      c.expect((*got)[i].run_id == expected[i].run_id, at + ".run_id");
      c.expect((*got)[i].superstep == expected[i].superstep, at + ".superstep");
      c.expect((*got)[i].node_name == expected[i].node_name, at + ".node_name (insertion order)");
      c.same_value(expected[i].result, (*got)[i].result, at + ".result");
    }
  }
  c.expect_code(store.put_pending_write({"no-such-run", 1, "a", Value()}), StatusCode::kNotFound,
                "put_pending_write(no-such-run)");
  c.expect_code(store.list_pending_writes("no-such-run"), StatusCode::kNotFound,
                "list_pending_writes(no-such-run)");
}

void check_steps(Store& store, Checker& c) {
  if (!create(store, c, sample_run("steps"))) return;
  if (!create(store, c, sample_run("steps-other"))) return;
  std::vector<StepRecord> expected = {sample_step("steps", "s1", "a"),
                                      sample_step("steps", "s2", "b"),
                                      sample_step("steps", "s3", "c")};
  expected[2].child_run_id = "child-1";
  expected[2].type = "subgraph";
  for (const StepRecord& s : expected) c.expect_ok(store.put_step(s), "put_step(" + s.id + ")");
  c.expect_ok(store.put_step(sample_step("steps-other", "s-other", "z")), "put_step(s-other)");

  // Replacing s1 keeps its place in the listing.
  expected[0].status = StepStatus::kCompleted;
  expected[0].output = Value::object({{"output", "done"}, {"tokens", 17}});
  expected[0].ended_at_ms = 1700000000200;
  c.expect_ok(store.put_step(expected[0]), "put_step(s1) again");

  Result<StepRecord> got = store.get_step("s2");
  if (c.expect_ok(got, "get_step(s2)")) c.same_step(expected[1], *got, "get_step(s2)");
  Result<std::vector<StepRecord>> steps = store.list_steps("steps");
  if (c.expect_ok(steps, "list_steps") &&
      c.expect(steps->size() == expected.size(),
               "list_steps returned " + std::to_string(steps->size()) + " steps")) {
    for (size_t i = 0; i < expected.size(); ++i) {
      c.same_step(expected[i], (*steps)[i], "list_steps[" + std::to_string(i) + "]");
    }
  }
  c.expect_code(store.put_step(sample_step("no-such-run", "s9", "a")), StatusCode::kNotFound,
                "put_step(no-such-run)");
  c.expect_code(store.get_step("no-such-step"), StatusCode::kNotFound, "get_step(no-such-step)");
  c.expect_code(store.list_steps("no-such-run"), StatusCode::kNotFound, "list_steps(no-such-run)");
}

void check_events(Store& store, Checker& c) {
  if (!create(store, c, sample_run("events"))) return;
  if (!create(store, c, sample_run("events-other"))) return;
  for (int i = 1; i <= 5; ++i) {
    EventRecord event;
    event.run_id = "events";
    event.seq = 99;  // ignored: the store assigns seq
    event.kind = i == 1 ? "run.started" : "step.completed";
    event.data = Value::object({{"i", i}, {"node", "n" + std::to_string(i)}});
    event.created_at_ms = 1700000000000 + i;
    Result<int64_t> seq = store.append_event(event);
    if (c.expect_ok(seq, "append_event"))
      c.expect(*seq == i, "append_event returned seq " + std::to_string(*seq) + ", expected " +
                              std::to_string(i));
  }
  EventRecord other;
  other.run_id = "events-other";
  other.kind = "run.started";
  Result<int64_t> other_seq = store.append_event(other);
  if (c.expect_ok(other_seq, "append_event(events-other)"))
    c.expect(*other_seq == 1, "seqs are per run: another run starts at 1");

  Result<std::vector<EventRecord>> all = store.list_events("events", 0, 100);
  if (c.expect_ok(all, "list_events(0, 100)") &&
      c.expect(all->size() == 5,
               "list_events returned " + std::to_string(all->size()) + " events")) {
    for (int i = 1; i <= 5; ++i) {
      const EventRecord& e = (*all)[static_cast<size_t>(i - 1)];
      const std::string at = "event " + std::to_string(i);
      c.expect(e.seq == i, at + ".seq");
      c.expect(e.run_id == "events", at + ".run_id");
      c.expect(e.kind == (i == 1 ? "run.started" : "step.completed"), at + ".kind");
      c.same_value(Value::object({{"i", i}, {"node", "n" + std::to_string(i)}}), e.data,
                   at + ".data");
      c.expect(e.created_at_ms == 1700000000000 + i, at + ".created_at_ms");
    }
  }
  auto seqs = [&](int64_t after, size_t limit) {
    std::vector<int64_t> out;
    Result<std::vector<EventRecord>> events = store.list_events("events", after, limit);
    if (c.expect_ok(events,
                    "list_events(" + std::to_string(after) + ", " + std::to_string(limit) + ")")) {
      for (const EventRecord& e : *events) out.push_back(e.seq);
    }
    return out;
  };
  c.expect(seqs(2, 2) == std::vector<int64_t>{3, 4},
           "list_events(after 2, limit 2) must give seqs 3, 4");
  c.expect(seqs(4, 100) == std::vector<int64_t>{5}, "list_events(after 4) must give seq 5");
  c.expect(seqs(5, 100).empty(), "list_events(after the last) must be empty");
  c.expect(seqs(0, 0).empty(), "list_events(limit 0) must be empty");
  c.expect(seqs(-1, 100).size() == 5, "list_events(after -1) must give every event");

  EventRecord lost;
  lost.run_id = "no-such-run";
  lost.kind = "x";
  c.expect_code(store.append_event(lost), StatusCode::kNotFound, "append_event(no-such-run)");
  c.expect_code(store.list_events("no-such-run", 0, 10), StatusCode::kNotFound,
                "list_events(no-such-run)");
}

void check_workflows(Store& store, Checker& c) {
  auto workflow = [](const std::string& id, int64_t version) {
    WorkflowRecord w;
    w.id = id;
    w.name = "Workflow " + id;
    w.version = version;
    w.definition = Value::object({{"name", id}, {"nodes", Value::object()}, {"version", version}});
    w.created_at_ms = 1700000000000;
    w.updated_at_ms = 1700000000000 + version;
    return w;
  };
  auto same = [&c](const WorkflowRecord& expected, const WorkflowRecord& actual,
                   const std::string& at) {
    c.expect(expected.id == actual.id, at + ".id");
    c.expect(expected.name == actual.name, at + ".name");
    c.expect(expected.version == actual.version, at + ".version");
    c.same_value(expected.definition, actual.definition, at + ".definition");
    c.expect(expected.created_at_ms == actual.created_at_ms, at + ".created_at_ms");
    c.expect(expected.updated_at_ms == actual.updated_at_ms, at + ".updated_at_ms");
  };
  auto listed = [&]() {
    std::vector<std::string> ids;
    Result<std::vector<WorkflowRecord>> all = store.list_workflows();
    if (c.expect_ok(all, "list_workflows")) {
      for (const WorkflowRecord& w : *all) ids.push_back(w.id);
    }
    return ids;
  };

  c.expect(listed().empty(), "a new store lists no workflows");
  c.expect_ok(store.put_workflow(workflow("w1", 1), true), "put_workflow(w1, create_only)");
  c.expect_code(store.put_workflow(workflow("w1", 5), true), StatusCode::kAlreadyExists,
                "put_workflow(w1, create_only) again");
  Result<WorkflowRecord> got = store.get_workflow("w1");
  if (c.expect_ok(got, "get_workflow(w1)"))
    same(workflow("w1", 1), *got, "w1 after the refused create");
  c.expect_ok(store.put_workflow(workflow("w2", 1), true), "put_workflow(w2)");
  c.expect_ok(store.put_workflow(workflow("w3", 1), false), "put_workflow(w3, replace)");
  c.expect_ok(store.put_workflow(workflow("w1", 2), false), "put_workflow(w1, replace)");
  got = store.get_workflow("w1");
  if (c.expect_ok(got, "get_workflow(w1)")) same(workflow("w1", 2), *got, "w1 after replace");
  c.expect(listed() == std::vector<std::string>{"w1", "w2", "w3"},
           "list_workflows keeps first-put order");
  c.expect_ok(store.delete_workflow("w2"), "delete_workflow(w2)");
  c.expect_code(store.get_workflow("w2"), StatusCode::kNotFound, "get_workflow after delete");
  c.expect_code(store.delete_workflow("w2"), StatusCode::kNotFound, "delete_workflow twice");
  c.expect(listed() == std::vector<std::string>{"w1", "w3"}, "list_workflows after delete");
  c.expect_code(store.get_workflow("no-such-workflow"), StatusCode::kNotFound,
                "get_workflow(no-such-workflow)");
}

void check_write_batch(Store& store, Checker& c) {
  if (!create(store, c, sample_run("batch"))) return;
  EventRecord first;
  first.run_id = "batch";
  first.kind = "run.started";
  c.expect_ok(store.append_event(first), "append_event(run.started)");
  c.expect_ok(store.put_pending_write(PendingWrite{"batch", 1, "early", Value::object()}),
              "put_pending_write(early)");

  // The engine's shape: a step written twice, a pending write, a checkpoint
  // with the run's progress, then the superstep's events.
  StoreBatch batch;
  StepRecord step = sample_step("batch", "b-s1", "a");
  batch.steps.push_back(step);
  step.status = StepStatus::kCompleted;
  step.output = Value::object({{"output", "done"}});
  batch.steps.push_back(step);
  batch.pending_writes.push_back(PendingWrite{"batch", 1, "a", Value::object({{"kind", "ok"}})});
  const Value state = Value::object({{"count", 1}, {"items", Value::array({"a"})}});
  batch.checkpoint = sample_checkpoint("batch", 1, state);
  RunRecord run = sample_run("batch");
  run.state = state;
  run.checkpoint_count = 1;
  batch.run = run;
  for (const char* kind : {"task_start", "task_result", "values"}) {
    EventRecord e;
    e.run_id = "batch";
    e.kind = kind;
    e.data = Value::object({{"kind", kind}});
    batch.events.push_back(e);
  }
  // As the engine emits it: the very state of the checkpoint (a store may
  // keep it once for both).
  batch.events.back().data.set("state", batch.checkpoint->state);
  if (!c.expect_ok(store.write_batch(batch), "write_batch")) return;
  c.expect(batch.events[0].seq == 2 && batch.events[1].seq == 3 && batch.events[2].seq == 4,
           "write_batch must give the events the run's next seqs (2, 3, 4) and set them in the batch");
  Result<StepRecord> got_step = store.get_step("b-s1");
  if (c.expect_ok(got_step, "get_step(b-s1)")) c.same_step(step, *got_step, "the batch's last step version");
  Result<std::vector<PendingWrite>> writes = store.list_pending_writes("batch");
  if (c.expect_ok(writes, "list_pending_writes")) {
    c.expect(writes->empty(), "the batch's checkpoint must drop the run's pending writes");
  }
  Result<Checkpoint> latest = store.latest_checkpoint("batch");
  if (c.expect_ok(latest, "latest_checkpoint")) c.same_value(state, latest->state, "checkpoint state");
  Result<RunRecord> got_run = store.get_run("batch");
  if (c.expect_ok(got_run, "get_run")) {
    c.same_value(state, got_run->state, "run state after the batch");
    c.expect(got_run->checkpoint_count == 1, "run checkpoint_count after the batch");
  }
  Result<std::vector<EventRecord>> events = store.list_events("batch", 1, 10);
  if (c.expect_ok(events, "list_events") && c.expect(events->size() == 3, "the batch's 3 events are listed")) {
    c.expect((*events)[2].kind == "values", "events keep the batch's order");
    c.same_value(Value::object({{"kind", "values"}, {"state", state}}), (*events)[2].data,
                 "a values event carrying the checkpoint's state");
  }

  // A checkpoint that changes the run's status.
  StoreBatch last;
  last.checkpoint = sample_checkpoint("batch", 2, Value::object({{"count", 2}}));
  run.status = RunStatus::kCompleted;
  run.checkpoint_count = 2;
  run.state = last.checkpoint->state;
  last.run = run;
  EventRecord values;
  values.run_id = "batch";
  values.kind = "values";
  values.data = Value::object({{"step", "b"}, {"state", last.checkpoint->state}});
  last.events.push_back(values);
  c.expect_ok(store.write_batch(last), "write_batch(completing checkpoint)");
  got_run = store.get_run("batch");
  if (c.expect_ok(got_run, "get_run after the completing checkpoint")) {
    c.expect(got_run->status == RunStatus::kCompleted, "a checkpoint's run record sets the run's status");
  }
  // Dropping checkpoints leaves the events whole.
  c.expect_ok(store.truncate_checkpoints("batch", 0), "truncate_checkpoints(batch, 0)");
  events = store.list_events("batch", 1, 10);
  if (c.expect_ok(events, "list_events after truncate_checkpoints") &&
      c.expect(events->size() == 4, "4 events after the second batch")) {
    c.same_value(Value::object({{"kind", "values"}, {"state", state}}), (*events)[2].data,
                 "the first values event after its checkpoint was dropped");
    c.same_value(Value::object({{"step", "b"}, {"state", Value::object({{"count", 2}})}}), (*events)[3].data,
                 "the second values event after its checkpoint was dropped");
  }
  run.status = RunStatus::kRunning;

  // Without a checkpoint, a run record in the batch is an update_run.
  StoreBatch pause;
  run.status = RunStatus::kInterrupted;
  pause.run = run;
  c.expect_ok(store.write_batch(pause), "write_batch(run only)");
  got_run = store.get_run("batch");
  if (c.expect_ok(got_run, "get_run after pause")) c.expect(got_run->status == RunStatus::kInterrupted, "status");

  StoreBatch orphan;
  EventRecord lost;
  lost.run_id = "no-such-run";
  lost.kind = "x";
  orphan.events.push_back(lost);
  c.expect_code(store.write_batch(orphan), StatusCode::kNotFound, "write_batch(no-such-run)");
}


// A store whose accepts_earlier_checkpoint() is true: a batch's two
// checkpoints are both written, the earlier first, as the run's last two.
void check_write_batch_two_checkpoints(Store& store, Checker& c) {
  if (!store.accepts_earlier_checkpoint()) return;
  if (!create(store, c, sample_run("pair"))) return;
  RunRecord run = sample_run("pair");
  StoreBatch first;
  first.checkpoint = sample_checkpoint("pair", 0, Value::object({{"count", 0}, {"text", std::string(300, 'x')}}));
  run.state = first.checkpoint->state;
  run.checkpoint_count = 1;
  first.run = run;
  if (!c.expect_ok(store.write_batch(first), "write_batch(first checkpoint)")) return;

  StoreBatch pair;
  pair.earlier_checkpoint = sample_checkpoint("pair", 1, Value::object({{"count", 1}, {"text", std::string(300, 'x')}}));
  pair.checkpoint = sample_checkpoint("pair", 2, Value::object({{"count", 1}, {"text", std::string(300, 'x')}}));
  pair.checkpoint->step_id = "__end__";
  run.status = RunStatus::kCompleted;
  run.state = pair.checkpoint->state;
  run.checkpoint_count = 3;
  pair.run = run;
  for (const char* kind : {"checkpoint.created", "run.completed"}) {
    EventRecord e;
    e.run_id = "pair";
    e.kind = kind;
    e.data = Value::object({{"kind", kind}});
    pair.events.push_back(e);
  }
  const std::string earlier_id = pair.earlier_checkpoint->id, later_id = pair.checkpoint->id;
  if (!c.expect_ok(store.write_batch(pair), "write_batch(earlier_checkpoint + checkpoint)")) return;
  c.expect(pair.events[0].seq == 1 && pair.events[1].seq == 2, "write_batch with two checkpoints gives its events seqs 1, 2");
  Result<std::vector<Checkpoint>> all = store.list_checkpoints("pair");
  if (c.expect_ok(all, "list_checkpoints after two checkpoints in one batch") &&
      c.expect(all->size() == 3, "both checkpoints of the batch are stored")) {
    c.expect((*all)[1].id == earlier_id && (*all)[2].id == later_id, "the earlier checkpoint comes first");
    c.expect((*all)[2].parent_id == earlier_id, "the later checkpoint's parent is the earlier one");
    c.same_value(Value::object({{"count", 1}, {"text", std::string(300, 'x')}}), (*all)[1].state,
                 "the earlier checkpoint's state");
    c.expect((*all)[2].step_id == "__end__", "the later checkpoint's step");
  }
  Result<Checkpoint> latest = store.latest_checkpoint("pair");
  if (c.expect_ok(latest, "latest_checkpoint after two in one batch")) c.expect(latest->id == later_id, "the later one is the latest");
  Result<Checkpoint> earlier = store.get_checkpoint(earlier_id);
  if (c.expect_ok(earlier, "get_checkpoint(earlier)")) c.expect(earlier->version == 1, "the earlier checkpoint's version");
  Result<RunRecord> got = store.get_run("pair");
  if (c.expect_ok(got, "get_run after two checkpoints in one batch")) {
    c.expect(got->status == RunStatus::kCompleted && got->checkpoint_count == 3, "the run record of the batch");
  }
  // An earlier checkpoint alone is not a batch's shape.
  StoreBatch alone;
  alone.earlier_checkpoint = sample_checkpoint("pair", 3, Value::object());
  alone.run = run;
  c.expect(!store.write_batch(alone).ok(), "write_batch with an earlier_checkpoint and no checkpoint must fail");
}

void check_write_batch_create(Store& store, Checker& c) {
  // The engine's start of a run: the run, its first checkpoint and event at once.
  StoreBatch start;
  RunRecord run = sample_run("born");
  run.idempotency_key = "born-key";
  start.create.emplace();
  start.create->run = run;
  start.create->owner = "engine-a";
  start.create->lease_ms = 60000;
  const Value state = Value::object({{"count", 0}});
  start.checkpoint = sample_checkpoint("born", 1, state);
  run.state = state;
  run.checkpoint_count = 1;
  start.run = run;
  EventRecord started;
  started.run_id = "born";
  started.kind = "run.started";
  started.data = Value::object({{"input", Value::object()}});
  start.events.push_back(started);
  if (!c.expect_ok(store.write_batch(start), "write_batch(create + checkpoint + event)")) return;
  c.expect(start.events[0].seq == 1, "the new run's first event gets seq 1");
  c.expect(start.run && start.run->id == "born" && start.run->checkpoint_count == 1,
           "write_batch must leave the batch's run record as it was");
  Result<RunRecord> got = store.get_run("born");
  if (c.expect_ok(got, "get_run after a creating batch")) {
    c.same_value(state, got->state, "the created run's state is its checkpoint's");
    c.expect(got->checkpoint_count == 1, "the created run's checkpoint_count");
    c.expect(got->idempotency_key == "born-key", "the created run keeps its idempotency key");
  }
  Result<Checkpoint> latest = store.latest_checkpoint("born");
  if (c.expect_ok(latest, "latest_checkpoint of the created run")) c.same_value(state, latest->state, "its checkpoint");
  c.expect_ok(store.claim_run("born", "engine-a", 60000), "claim_run by the owner that created it");

  // A taken id, or a taken idempotency key: AlreadyExists, and nothing of the batch is written.
  for (const char* id : {"born", "born-twin"}) {
    StoreBatch again;
    again.create.emplace();
    again.create->run = sample_run(id);
    again.create->run.idempotency_key = "born-key";
    again.create->owner = "engine-b";
    EventRecord extra;
    extra.run_id = id;
    extra.kind = "run.started";
    again.events.push_back(extra);
    Status s = store.write_batch(again);
    c.expect(s.code() == StatusCode::kAlreadyExists, std::string("write_batch creating a taken run (") + id + ") must fail with AlreadyExists");
    if (std::string(id) == "born-twin") c.expect(s.message() == "born", "a taken idempotency key's message is the run holding it");
  }
  Result<std::vector<EventRecord>> events = store.list_events("born", 0, 10);
  if (c.expect_ok(events, "list_events after refused creations")) {
    c.expect(events->size() == 1, "a refused creating batch writes none of its events");
  }
  c.expect_code(store.get_run("born-twin"), StatusCode::kNotFound, "a refused creating batch creates no run");
}

void check_host_records(Store& store, Checker& c) {
  Status first = store.put_host_record("workers", "w1", Value::object({{"id", "w1"}, {"url", "http://a/x"}}));
  if (first.code() == StatusCode::kUnimplemented) {
    // Optional: a store without them says so for every call.
    c.expect_code(store.list_host_records("workers"), StatusCode::kUnimplemented,
                  "list_host_records without put_host_record");
    return;
  }
  c.expect_ok(first, "put_host_record(workers, w1)");
  auto ids = [&](const std::string& collection) {
    std::vector<std::string> out;
    Result<std::vector<Value>> all = store.list_host_records(collection);
    if (c.expect_ok(all, "list_host_records(" + collection + ")")) {
      for (const Value& v : *all) out.push_back(v["id"].is_string() ? v["id"].as_string() : "?");
    }
    return out;
  };
  c.expect_ok(store.put_host_record("workers", "w2", Value::object({{"id", "w2"}})), "put_host_record(w2)");
  c.expect_ok(store.put_host_record("other", "w1", Value::object({{"id", "o1"}})),
              "put_host_record(other, w1): ids are per collection");
  c.expect_ok(store.put_host_record("workers", "w1", Value::object({{"id", "w1"}, {"url", "http://b/x"}})),
              "put_host_record(w1) again replaces it");
  c.expect(ids("workers") == std::vector<std::string>{"w1", "w2"}, "list_host_records keeps first-put order");
  c.expect(ids("other") == std::vector<std::string>{"o1"}, "collections are separate");
  c.expect(ids("none").empty(), "an unknown collection is empty");
  Result<std::vector<Value>> workers = store.list_host_records("workers");
  if (c.expect_ok(workers, "list_host_records(workers)") && !workers->empty()) {
    c.same_value(Value::object({{"id", "w1"}, {"url", "http://b/x"}}), (*workers)[0], "the replaced record");
  }
  c.expect_ok(store.delete_host_record("workers", "w2"), "delete_host_record(w2)");
  c.expect_code(store.delete_host_record("workers", "w2"), StatusCode::kNotFound, "delete_host_record twice");
  c.expect(ids("workers") == std::vector<std::string>{"w1"}, "list_host_records after delete");
  c.expect(ids("other") == std::vector<std::string>{"o1"}, "a delete leaves other collections alone");
}

}  // namespace orch::testing::conformance
