// SPDX-License-Identifier: MIT
// Group commit of the PostgreSQL store. With many runs in flight, each
// superstep committed on its own cost PostgreSQL a transaction, a commit (a
// WAL flush when synchronous) and a lock statement per node, which made its
// CPU, not orch's, the limit. Supersteps that arrive while a group is being
// written wait, and the next leader writes all of them in one pipeline that
// is one transaction: one statement per run, one commit for the group.
//
// Each run's statement is conditional (checkpoint_events_sql with
// `conditional`): its UPDATE of the run row, which takes the row's lock,
// matches only while the writer holds the run's lease at its epoch and the
// run's latest checkpoint is the one the batch's delta follows. The
// condition is re-checked against the row's newest version once the lock is
// granted, so a stale owner writes nothing (the fencing guarantee), and a
// refused run affects no other run of its group: its statement returns no
// rows instead of failing the transaction. A refused member is then written
// on its own (pg_store_batches.cc), which tells why: the lease lost, the run
// gone, or a chain that moved on (the slow path).
//
// Runs are written in run id order, so two instances' groups lock shared
// rows (only during a takeover) in one order.
#include <algorithm>
#include <condition_variable>
#include <unordered_set>

#include "store/postgres/pg_rows.h"
#include "store/postgres/pg_store_impl.h"
#include "store/store_batch.h"

namespace orch::postgres {

struct PostgresStore::GroupMember {
  StoreBatch* batch = nullptr;
  std::string run_id;
  std::vector<const StepRecord*> steps;  // the batch's, each id's last version
  PreparedCheckpoint prepared;
  std::vector<int64_t> seqs;
  // kRefused: nothing of it was written (its condition failed, or the
  // group rolled back); kFailed: it may have been written.
  enum class Outcome { kWritten, kRefused, kFailed };
  Outcome outcome = Outcome::kFailed;
  Status result;  // why, when kFailed
  // Its own lock and wake-up, so a leader wakes exactly the members it wrote.
  std::mutex mu;
  std::condition_variable wake;
  bool done = false;  // its group was written (outcome says how)
  bool lead = false;  // the previous leader handed over: write `handed`
  std::vector<GroupMember*> handed;  // this member first
};

bool PostgresStore::groupable(const StoreBatch& batch) {
  return !batch.create && batch.checkpoint && batch.run && !batch.events.empty();
}

void PostgresStore::prepare_member(GroupMember& member) {
  const StoreBatch& batch = *member.batch;
  member.steps = last_step_versions(batch.steps);
  // Encoding needs no connection: done while others write.
  PreparedCheckpoint& prepared = member.prepared;
  prepared.document = checkpoint_codec::checkpoint_document(*batch.checkpoint);
  CachedDocument previous;
  if (cached_document(member.run_id, &previous)) prepared.previous = std::move(previous);
  prepared.encoded = checkpoint_codec::encode_checkpoint(
      batch.checkpoint->id, prepared.document, prepared.previous ? &prepared.previous->link : nullptr,
      prepared.previous ? &prepared.previous->document : nullptr, options_.max_delta_chain);
}

Status PostgresStore::write_grouped(StoreBatch& batch, const std::string& run_id) {
  GroupMember me;
  me.batch = &batch;
  me.run_id = run_id;
  prepare_member(me);
  // A new leader takes the queue, its own batch included, under the lock it
  // queued under: no other leader can take its batch from it.
  std::vector<GroupMember*> group;
  {
    std::lock_guard<std::mutex> lock(group_mu_);
    group_queue_.push_back(&me);
    if (group_leaders_ < group_writers_) {
      ++group_leaders_;
      group.swap(group_queue_);
    }
  }
  if (group.empty()) {
    std::unique_lock<std::mutex> lock(me.mu);
    me.wake.wait(lock, [&me] { return me.done || me.lead; });
    if (!me.done) group = std::move(me.handed);  // the lead, with a group holding this batch
  }
  if (!group.empty()) lead_group(std::move(group));
  return finish_member(me);
}

// The leader writes its group, then what queued meanwhile, for up to
// kLeaderRounds groups, before it hands the lead, with the queue, to the
// first batch waiting. Up to group_writers_ leaders write at once, each
// group on a connection of its own (the server runs them in parallel).
// One round: a group takes a round trip and its statements' time on the
// server (milliseconds with many runs), and a leader writing more groups
// holds its own run back that long; a hand-over only wakes a thread. (With
// 100 runs in flight and a 15 ms worker, 3 rounds gave a p50 added latency
// of 25-43 ms, 1 round 29-35 ms, alternating, at load average 6-9.)
void PostgresStore::lead_group(std::vector<GroupMember*> group) {
  constexpr int kLeaderRounds = 1;
  for (int round = 1;; ++round) {
    write_group(group);
    std::vector<GroupMember*> queued;
    bool hand_over = false;
    {
      std::lock_guard<std::mutex> lock(group_mu_);
      if (group_queue_.empty()) {
        --group_leaders_;
      } else {
        queued.swap(group_queue_);
        hand_over = round >= kLeaderRounds;
      }
    }
    for (GroupMember* member : group) {
      // Under its lock: a member may return (and its frame go) once it sees done.
      std::lock_guard<std::mutex> lock(member->mu);
      member->done = true;
      member->wake.notify_one();
    }
    if (queued.empty()) return;
    if (hand_over) {
      GroupMember* next = queued.front();
      std::lock_guard<std::mutex> lock(next->mu);
      next->handed = std::move(queued);
      next->lead = true;
      next->wake.notify_one();
      return;
    }
    group = std::move(queued);
  }
}

void PostgresStore::write_group(const std::vector<GroupMember*>& group) {
  std::vector<GroupMember*> ordered(group);
  std::sort(ordered.begin(), ordered.end(),
            [](const GroupMember* a, const GroupMember* b) { return a->run_id < b->run_id; });
  std::vector<Command> commands;
  commands.reserve(ordered.size() + 1);
  // The session may commit without waiting for the WAL flush
  // (relaxed_unsynced_commits); a group with a member that must, waits.
  if (std::any_of(ordered.begin(), ordered.end(), [](const GroupMember* m) { return m->batch->sync_to_disk; })) {
    commands.push_back({"SELECT set_config('synchronous_commit', 'on', true)", Params()});
  }
  const size_t first = commands.size();
  for (GroupMember* member : ordered) {
    const StoreBatch& batch = *member->batch;
    CheckpointCondition condition;
    if (member->prepared.previous) condition.expected_checkpoint = member->prepared.previous->link.id;
    if (batch.lease_epoch > 0) {
      condition.lease_owner = batch.lease_owner;
      condition.lease_epoch = batch.lease_epoch;
    }
    commands.push_back(checkpoint_commit(*batch.run, *batch.checkpoint, member->prepared.encoded, &batch.events,
                                         member->steps, options_.announce_events, &condition));
  }
  bool rolled_back = false;  // the server answered the group with an error
  Status status = with_connection("write_batch", [&](Connection& conn) -> Status {
    Result<std::vector<Rows>> answered = conn.pipeline("write_batch", commands);
    if (!answered.ok()) {
      rolled_back = !conn.broken();
      return answered.status();
    }
    std::vector<Rows>& results = *answered;
    for (size_t i = 0; i < ordered.size(); ++i) {
      GroupMember& member = *ordered[i];
      const Rows& rows = results[first + i];
      if (rows.count() == 0) {
        member.outcome = GroupMember::Outcome::kRefused;
        continue;
      }
      Result<std::vector<int64_t>> seqs = event_seqs(rows);
      if (!seqs.ok() || seqs->size() != member.batch->events.size()) {
        // Committed, but its seqs are unknown: not to be written again.
        member.outcome = GroupMember::Outcome::kFailed;
        member.result = seqs.ok() ? Status::internal("write_batch: the events of run " + member.run_id + " got " +
                                                     std::to_string(seqs->size()) + " seqs, not " +
                                                     std::to_string(member.batch->events.size()))
                                  : seqs.status();
        continue;
      }
      member.seqs = std::move(*seqs);
      member.outcome = GroupMember::Outcome::kWritten;
    }
    return Status();
  });
  if (!status.ok()) {
    // Rolled back (one member's statement failed, say a parameter PostgreSQL
    // cannot store, or a deadlock with another instance's group): nothing was
    // written, and each member is written on its own. Otherwise (the
    // connection lost or given up on mid-group, none to be had) nobody knows
    // whether it committed.
    for (GroupMember* member : group) {
      member->outcome = rolled_back ? GroupMember::Outcome::kRefused : GroupMember::Outcome::kFailed;
      member->result = status;
      member->seqs.clear();
    }
  }
}

Status PostgresStore::finish_member(GroupMember& member) {
  StoreBatch& batch = *member.batch;
  if (member.outcome == GroupMember::Outcome::kWritten) {
    for (size_t i = 0; i < member.seqs.size(); ++i) batch.events[i].seq = member.seqs[i];
    checkpoint_committed(*batch.run, member.prepared);
    return Status();
  }
  // The group may have committed (a connection lost before its answer), or
  // it did and this member's answer did not read back: written again, the
  // batch could be written twice.
  if (member.outcome == GroupMember::Outcome::kFailed) return member.result;
  // Refused by its condition, or its group rolled back: on its own, which
  // checks the lease and the chain again and says what is wrong.
  std::vector<int64_t> seqs;
  ORCH_RETURN_IF_ERROR(write_run_batch(batch, member.run_id, &seqs));
  for (size_t i = 0; i < seqs.size() && i < batch.events.size(); ++i) batch.events[i].seq = seqs[i];
  return Status();
}

std::vector<Status> PostgresStore::write_batches_as_group(const std::vector<StoreBatch*>& batches) {
  std::vector<std::unique_ptr<GroupMember>> members;
  std::vector<GroupMember*> group;
  std::vector<Status> out(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) {
    const std::string* run_id = internal::single_run_of(*batches[i]);
    if (run_id == nullptr || !groupable(*batches[i])) {
      out[i] = write_batch(*batches[i]);
      continue;
    }
    members.push_back(std::make_unique<GroupMember>());
    members.back()->batch = batches[i];
    members.back()->run_id = *run_id;
    prepare_member(*members.back());
    group.push_back(members.back().get());
  }
  if (!group.empty()) write_group(group);
  size_t next = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (next < members.size() && members[next]->batch == batches[i]) out[i] = finish_member(*members[next++]);
  }
  return out;
}

}  // namespace orch::postgres
