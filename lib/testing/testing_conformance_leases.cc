// SPDX-License-Identifier: MIT
// Conformance: leases with fencing (Store::claim_run_lease, fenced
// StoreBatch, renew_leases, list_expired_leases). A store whose
// claim_run_lease returns epoch 0 does not fence: the check then only asks
// that a batch with epoch 0 is written as usual.
#include <algorithm>

#include "testing/testing_conformance_support.h"

namespace orch::testing::conformance {
namespace {

// A batch of run `run_id` as the engine writes one: a step, a run update to
// `status`, an event; fenced by `owner` at `epoch`.
StoreBatch fenced_batch(const std::string& run_id, const std::string& step_id, RunStatus status,
                        const std::string& owner, int64_t epoch) {
  StoreBatch batch;
  batch.steps.push_back(sample_step(run_id, step_id, "a"));
  RunRecord run = sample_run(run_id);
  run.status = status;
  batch.run = run;
  EventRecord event;
  event.run_id = run_id;
  event.kind = "values";
  event.data = Value::object({{"step", step_id}});
  batch.events.push_back(event);
  batch.lease_owner = owner;
  batch.lease_epoch = epoch;
  return batch;
}

size_t event_count(Store& store, const std::string& run_id) {
  auto events = store.list_events(run_id, 0, 1000);
  return events.ok() ? events->size() : 0;
}

void check_expired_listing(Store& store, Checker& c) {
  RunRecord expired = sample_run("lease-expired");
  expired.status = RunStatus::kRunning;
  RunRecord live = sample_run("lease-live");
  live.status = RunStatus::kRunning;
  RunRecord child = sample_run("lease-child");
  child.status = RunStatus::kRunning;
  child.parent_run_id = "lease-expired";
  child.parent_node = "sub";
  RunRecord ended = sample_run("lease-ended");
  ended.status = RunStatus::kCompleted;
  RunRecord unowned = sample_run("lease-unowned");
  unowned.status = RunStatus::kRunning;
  c.expect_ok(store.create_claimed_run(expired, "engine-c", 0), "create_claimed_run(lease-expired, 0 ms)");
  c.expect_ok(store.create_claimed_run(live, "engine-c", 600000), "create_claimed_run(lease-live)");
  c.expect_ok(store.create_claimed_run(child, "engine-c", 0), "create_claimed_run(lease-child, 0 ms)");
  c.expect_ok(store.create_claimed_run(ended, "engine-c", 0), "create_claimed_run(lease-ended, 0 ms)");
  c.expect_ok(store.create_run(unowned), "create_run(lease-unowned)");
  auto listed = store.list_expired_leases(100);
  if (!c.expect_ok(listed, "list_expired_leases")) return;
  auto has = [&](const std::string& id) { return std::find(listed->begin(), listed->end(), id) != listed->end(); };
  c.expect(has("lease-expired"), "list_expired_leases must list a running run whose lease ran out");
  c.expect(has("lease-unowned"), "list_expired_leases must list a running run nobody holds");
  c.expect(!has("lease-live"), "list_expired_leases listed a run whose lease is live");
  c.expect(!has("lease-child"), "list_expired_leases listed a subgraph child (it resumes through its parent)");
  c.expect(!has("lease-ended"), "list_expired_leases listed a run that has ended");
  auto one = store.list_expired_leases(1);
  if (c.expect_ok(one, "list_expired_leases(1)")) c.expect(one->size() == 1, "list_expired_leases ignored its limit");

  // Renewal extends every lease of the owner: the expired run is no longer listed.
  auto renewed = store.renew_leases("engine-c", 600000);
  if (c.expect_ok(renewed, "renew_leases(engine-c)")) {
    c.expect(*renewed >= 2, "renew_leases renewed " + std::to_string(*renewed) + " runs, expected at least 2");
  }
  auto after = store.list_expired_leases(100);
  if (c.expect_ok(after, "list_expired_leases after renew_leases")) {
    c.expect(std::find(after->begin(), after->end(), "lease-expired") == after->end(),
             "a renewed lease is still listed as expired");
  }
  c.expect_code(store.claim_run("lease-expired", "engine-d", 60000), StatusCode::kAborted,
                "claim_run of a renewed lease by another owner");
}

void check_singletons(Store& store, Checker& c) {
  auto first = store.claim_singleton("sweep", "engine-a", 600000);
  if (c.expect_ok(first, "claim_singleton by its first owner")) c.expect(*first, "a free singleton was refused");
  auto again = store.claim_singleton("sweep", "engine-a", 0);
  if (c.expect_ok(again, "claim_singleton again by its owner")) c.expect(*again, "a singleton's owner was refused it");
  // engine-a's lease on it has run out (0 ms): engine-b may take it, and then holds it.
  auto taken = store.claim_singleton("sweep", "engine-b", 600000);
  if (c.expect_ok(taken, "claim_singleton of an expired singleton")) c.expect(*taken, "an expired singleton was refused");
  auto other = store.claim_singleton("other-sweep", "engine-a", 600000);
  if (c.expect_ok(other, "claim_singleton of another name")) c.expect(*other, "singletons of different names conflict");
}

}  // namespace

void check_lease_fencing(Store& store, Checker& c) {
  RunRecord run = sample_run("fenced");
  run.status = RunStatus::kRunning;
  if (!c.expect_ok(store.create_claimed_run(run, "engine-a", 600000), "create_claimed_run(fenced)")) return;
  Result<int64_t> first = store.claim_run_lease("fenced", "engine-a", 600000);
  if (!c.expect_ok(first, "claim_run_lease by the owner that created it")) return;
  if (*first == 0) {
    // Not a fencing store: unfenced batches must still be written.
    StoreBatch batch = fenced_batch("fenced", "fenced-s0", RunStatus::kRunning, "", 0);
    c.expect_ok(store.write_batch(batch), "write_batch without a lease epoch");
    check_singletons(store, c);
    return;
  }
  c.expect(*first == 1, "a run created claimed starts at epoch 1, got " + std::to_string(*first));
  StoreBatch mine = fenced_batch("fenced", "fenced-s1", RunStatus::kRunning, "engine-a", *first);
  c.expect_ok(store.write_batch(mine), "write_batch fenced by the lease's owner and epoch");
  c.expect_code(store.claim_run_lease("fenced", "engine-b", 600000), StatusCode::kAborted,
                "claim_run_lease of a live lease by another owner");

  // engine-a's lease runs out (a 0 ms renewal) and engine-b takes the run over.
  c.expect_ok(store.claim_run_lease("fenced", "engine-a", 0), "claim_run_lease for 0 ms");
  Result<int64_t> taken = store.claim_run_lease("fenced", "engine-b", 600000);
  if (!c.expect_ok(taken, "claim_run_lease of an expired lease by another owner")) return;
  c.expect(*taken == *first + 1, "a takeover must bump the epoch: got " + std::to_string(*taken));

  // The stale owner's writes are refused, all of them, with "lease lost".
  const size_t events_before = event_count(store, "fenced");
  StoreBatch stale = fenced_batch("fenced", "fenced-s2", RunStatus::kFailed, "engine-a", *first);
  stale.checkpoint = sample_checkpoint("fenced", 7, Value::object({{"stale", true}}));
  Status refused = store.write_batch(stale);
  c.expect(lease_lost(refused), "a stale owner's batch must fail with Aborted \"lease lost\", got " +
                                    std::string(status_code_name(refused.code())) + ": " + refused.message());
  c.expect(event_count(store, "fenced") == events_before, "a refused batch wrote events");
  c.expect_code(store.get_step("fenced-s2"), StatusCode::kNotFound, "get_step of a refused batch's step");
  auto after = store.get_run("fenced");
  if (c.expect_ok(after, "get_run after a refused batch")) {
    c.expect(after->status == RunStatus::kRunning, "a refused batch changed the run's status");
  }
  auto cp = store.get_checkpoint("fenced-cp7");
  c.expect(!cp.ok(), "a refused batch wrote its checkpoint");
  c.expect(lease_lost(store.check_lease("fenced", "engine-a", *first)), "check_lease of the stale owner");
  c.expect_ok(store.check_lease("fenced", "engine-b", *taken), "check_lease of the new owner");
  c.expect(lease_lost(store.check_lease("fenced", "engine-b", *first)), "check_lease of the new owner at an old epoch");

  // The new owner writes; a claim by the current owner keeps the epoch.
  StoreBatch theirs = fenced_batch("fenced", "fenced-s3", RunStatus::kRunning, "engine-b", *taken);
  c.expect_ok(store.write_batch(theirs), "write_batch fenced by the new owner");
  if (!theirs.events.empty()) c.expect(theirs.events.front().seq > 0, "a fenced batch's event got no seq");
  Result<int64_t> again = store.claim_run_lease("fenced", "engine-b", 600000);
  if (c.expect_ok(again, "claim_run_lease by the current owner")) {
    c.expect(*again == *taken, "a claim by the current owner changed the epoch");
  }
  // Unfenced writes (epoch 0: the host's own, not a lease holder's) go through.
  StoreBatch unfenced = fenced_batch("fenced", "fenced-s4", RunStatus::kRunning, "", 0);
  c.expect_ok(store.write_batch(unfenced), "write_batch without a lease epoch");
  StoreBatch missing = fenced_batch("no-such-run", "fenced-s5", RunStatus::kRunning, "engine-b", 1);
  c.expect_code(store.write_batch(missing), StatusCode::kNotFound, "a fenced write_batch of a missing run");

  // An ended run's live lease does not keep another owner out (a retry or
  // replay through another engine), and the claim fences the previous owner.
  StoreBatch ended = fenced_batch("fenced", "fenced-s6", RunStatus::kFailed, "engine-b", *taken);
  if (c.expect_ok(store.write_batch(ended), "write_batch that ends the run")) {
    Result<int64_t> after_end = store.claim_run_lease("fenced", "engine-c", 600000);
    if (c.expect_ok(after_end, "claim_run_lease of an ended run under another owner's live lease")) {
      c.expect(*after_end == *taken + 1, "claiming an ended run must bump the epoch: got " + std::to_string(*after_end));
      c.expect(lease_lost(store.check_lease("fenced", "engine-b", *taken)), "check_lease of the ended run's old owner");
    }
  }

  check_expired_listing(store, c);
  check_singletons(store, c);
}

}  // namespace orch::testing::conformance
