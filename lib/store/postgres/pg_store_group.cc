// SPDX-License-Identifier: MIT
// Group commit of the PostgreSQL store. With many runs in flight, each
// superstep committed on its own cost PostgreSQL a transaction, a commit (a
// WAL flush when synchronous) and a lock statement per node, which made its
// CPU, not orch's, the limit. Supersteps that arrive while a group is being
// written wait, and the next leader writes all of them in one pipeline that
// is one transaction, one commit for the group. Their checkpoints, events
// and steps are one statement (pg_group_statement.h): PostgreSQL's work per
// statement (binding it, opening the tables and indexes it writes, setting
// up its executor) is paid once per group, not once per run.
//
// Each run's part is conditional: its UPDATE of the run row, which takes the
// row's lock, matches only while the writer holds the run's lease at its
// epoch and the run's latest checkpoint is the one the batch's delta
// follows. The condition is re-checked against the row's newest version
// once the lock is granted, so a stale owner writes nothing (the fencing
// guarantee), and a refused run affects no other run of its group: it
// returns no rows instead of failing the transaction. A refused member is
// then written on its own (pg_store_batches.cc), which tells why: the lease
// lost, the run gone, or a chain that moved on (the slow path).
//
// The rows of a group's runs are locked in run id order (see
// pg_group_statement.cc), so two instances' groups lock shared rows (only
// during a takeover) in one order.
//
// write_batch_async: the batch is queued, and a store-owned writer thread
// writes it and calls back, so that no caller sleeps on a commit. There is a
// writer (a lane) per group writer; a run's batches always go to the same
// lane, so its groups are written in parallel with the other lanes', on
// connections of their own. A lane's thread takes its whole queue and writes
// it in each run's order: the first batch of every run as one group, the
// second batches as the next (write_in_order), a batch without a checkpoint in it too
// (its run's lock, fenced, then its statements: a missing run or a lost
// lease fails the group, and each member is then written alone), a new
// run's batch alone. A refused member is written alone at once, before
// the next group is written; callbacks run in that order, on the lane's
// thread, never on a thread of write_batch (which may hold its caller's
// locks). A write_batch of a run whose async batches have not all been
// called back joins their lane behind them (and waits): a run's batches are
// written, and reported, in the order they were handed over. Different
// runs' batches are not ordered against one another (other lanes, or
// write_batch calls for runs with nothing in flight, which keep the
// callers' group commit above, in parallel with the writers).
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "orch/thread_guard.h"
#include "store/postgres/pg_event_rows.h"
#include "store/postgres/pg_group_statement.h"
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
  // Written by the writer thread, which also wrote it alone when refused:
  // `result` is write_batch's.
  bool finished = false;
  // false: a batch that joins no group (write_alone), queued only behind the
  // writer thread.
  bool grouped = true;
  // A batch without a checkpoint (a call's step record, say), which the
  // writer thread's groups also take: the run's lock (which fails the group
  // for a missing run or a lost lease: then each member is written alone)
  // and its statements, unconditional.
  bool plain = false;
  // write_batch_async: the member owns its batch and is called back by the
  // writer thread instead of being woken; it is deleted once called back.
  StoreBatch owned;
  BatchDone on_written;
  bool async() const { return static_cast<bool>(on_written); }
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
  encode_prepared(batch, &prepared);
}

Status PostgresStore::write_grouped(StoreBatch& batch, const std::string& run_id) {
  GroupMember me;
  me.batch = &batch;
  me.run_id = run_id;
  prepare_member(me);
  // Behind the run's async batches, when it has some, for its lane's thread.
  // Otherwise a new leader takes the queue, its own batch included, under the
  // lock it queued under: no other leader can take its batch from it.
  std::vector<GroupMember*> group;
  WriterLane* wake_writer = nullptr;
  {
    std::lock_guard<std::mutex> lock(group_mu_);
    if (async_pending_.count(run_id) > 0) {
      wake_writer = queue_for_writer_locked(&me);
    } else {
      group_queue_.push_back(&me);
      if (group_leaders_ < group_writers_) {
        ++group_leaders_;
        group.swap(group_queue_);
      }
    }
  }
  if (wake_writer != nullptr) wake_writer->wake.notify_one();
  if (group.empty()) {
    std::unique_lock<std::mutex> lock(me.mu);
    me.wake.wait(lock, [&me] { return me.done || me.lead; });
    if (!me.done) group = std::move(me.handed);  // the lead, with a group holding this batch
  }
  if (!group.empty()) lead_group(std::move(group));
  return me.finished ? me.result : finish_member(me);
}

Status PostgresStore::write_batch(StoreBatch& batch) {
  if (batch.empty()) return Status();
  const std::string* run_id = internal::single_run_of(batch);
  if (run_id == nullptr) return Store::write_batch(batch);  // not the engine's shape
  // A superstep's checkpoint with its events: committed together with other
  // runs'.
  if (!batch.create && groupable(batch)) return write_grouped(batch, *run_id);
  GroupMember me;
  me.batch = &batch;
  me.run_id = *run_id;
  me.grouped = false;
  Status status;
  if (write_behind_writer(me, &status)) return status;
  return write_alone(batch, *run_id);
}

bool PostgresStore::write_behind_writer(GroupMember& me, Status* status) {
  WriterLane* wake_writer = nullptr;
  {
    std::lock_guard<std::mutex> lock(group_mu_);
    if (async_pending_.count(me.run_id) == 0) return false;
    wake_writer = queue_for_writer_locked(&me);
  }
  if (wake_writer != nullptr) wake_writer->wake.notify_one();
  std::unique_lock<std::mutex> lock(me.mu);
  me.wake.wait(lock, [&me] { return me.done; });
  *status = me.result;
  return true;
}

void PostgresStore::write_batch_async(StoreBatch batch, BatchDone done) {
  if (batch.empty()) {
    done(Status(), batch);
    return;
  }
  const std::string* run_id = internal::single_run_of(batch);
  if (run_id == nullptr) {  // not the engine's shape
    Status status = Store::write_batch(batch);
    done(std::move(status), batch);
    return;
  }
  auto me = std::make_unique<GroupMember>();
  me->run_id = *run_id;
  me->owned = std::move(batch);
  me->batch = &me->owned;
  me->on_written = std::move(done);
  const StoreBatch& owned = me->owned;
  me->grouped = !owned.create && groupable(owned);
  me->plain = !me->grouped && !owned.create && !owned.checkpoint && !owned.earlier_checkpoint;
  me->grouped = me->grouped || me->plain;
  if (me->plain) {
    me->steps = last_step_versions(owned.steps);
  } else if (me->grouped) {
    prepare_member(*me);  // on the caller's thread, while the writer writes
  }
  WriterLane* wake_writer = nullptr;
  {
    std::lock_guard<std::mutex> lock(group_mu_);
    ++async_pending_[me->run_id];
    wake_writer = queue_for_writer_locked(me.release());  // the writer thread deletes it
  }
  if (wake_writer != nullptr) wake_writer->wake.notify_one();
}

PostgresStore::WriterLane* PostgresStore::queue_for_writer_locked(GroupMember* member) {
  if (lanes_.empty()) {
    for (size_t i = 0; i < group_writers_; ++i) lanes_.push_back(std::make_unique<WriterLane>());
  }
  WriterLane& lane = *lanes_[std::hash<std::string>()(member->run_id) % lanes_.size()];
  lane.queue.push_back(member);
  if (lane.leads) return nullptr;
  lane.leads = true;
  if (!lane.thread.joinable()) lane.thread = std::thread([this, &lane] { run_writer(lane); });
  return &lane;
}

void PostgresStore::run_writer(WriterLane& lane) {
  std::unique_lock<std::mutex> lock(group_mu_);
  for (;;) {
    lane.wake.wait(lock, [this, &lane] { return lane.leads || writer_stopping_; });
    if (!lane.leads) return;  // stopping, and nothing left to write
    std::vector<GroupMember*> taken;
    taken.swap(lane.queue);
    if (taken.empty()) {
      lane.leads = false;
      continue;
    }
    lock.unlock();
    write_in_order(taken);
    lock.lock();
  }
}

// What a lane took, written in as few groups as a run's order allows: only
// a run's own batches are ordered (different runs' are not ordered against
// one another), so between two members that join no group (written alone,
// in their place), the first batch of each run goes in one group, the
// second batches in the next, and so on. (Cutting the group at a run's
// second batch instead, as before, split a queue with many runs ending,
// each with two batches, into dozens of groups of a round trip each: one
// writer then spent 50-120 ms on a queue.) Each group is reported before
// the next is written.
void PostgresStore::write_in_order(const std::vector<GroupMember*>& members) {
  size_t i = 0;
  while (i < members.size()) {
    GroupMember& first = *members[i];
    if (!first.grouped) {
      first.result = write_alone(*first.batch, first.run_id);
      first.finished = true;
      report({&first});
      ++i;
      continue;
    }
    // The grouped members up to the next one that is not, layered by how
    // many batches of its run come before each in that stretch.
    std::vector<std::vector<GroupMember*>> layers;
    std::unordered_map<std::string_view, size_t> seen;
    for (; i < members.size() && members[i]->grouped; ++i) {
      const size_t layer = seen[members[i]->run_id]++;
      if (layer == layers.size()) layers.emplace_back();
      layers[layer].push_back(members[i]);
    }
    for (const std::vector<GroupMember*>& group : layers) {
      write_group(group);
      for (GroupMember* member : group) {
        member->result = finish_member(*member);  // refused ones are written alone here, in order
        member->finished = true;
      }
      report(group);
    }
  }
}

void PostgresStore::report(const std::vector<GroupMember*>& members) {
  std::vector<std::string> called_back;  // a run's, for each async member
  for (GroupMember* member : members) {
    if (member->async()) {
      std::unique_ptr<GroupMember> owned(member);
      run_guarded("store write callback", [&] { owned->on_written(std::move(owned->result), owned->owned); });
      called_back.push_back(std::move(owned->run_id));
      continue;
    }
    // Under its lock: a member may return (and its frame go) once it sees done.
    std::lock_guard<std::mutex> lock(member->mu);
    member->done = true;
    member->wake.notify_one();
  }
  // Only once called back: a write_batch of the run returns after that.
  if (called_back.empty()) return;
  std::lock_guard<std::mutex> lock(group_mu_);
  for (const std::string& run_id : called_back) {
    auto pending = async_pending_.find(run_id);
    if (pending != async_pending_.end() && --pending->second == 0) async_pending_.erase(pending);
  }
}

void PostgresStore::stop_writer() {
  {
    std::lock_guard<std::mutex> lock(group_mu_);
    writer_stopping_ = true;
    for (auto& lane : lanes_) lane->wake.notify_one();
  }
  for (auto& lane : lanes_) {
    if (!lane->thread.joinable()) continue;
    if (lane->thread.get_id() == std::this_thread::get_id()) {
      lane->thread.detach();  // the store goes from one of its own callbacks
    } else {
      lane->thread.join();
    }
  }
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
  groups_written_.fetch_add(1, std::memory_order_relaxed);
  std::vector<GroupMember*> ordered(group);
  // Stable: two batches of one run keep their order.
  std::stable_sort(ordered.begin(), ordered.end(),
            [](const GroupMember* a, const GroupMember* b) { return a->run_id < b->run_id; });
  // With each run once (the usual group), the plain members' statements go
  // first, so that the checkpoints are one statement.
  std::unordered_set<std::string_view> runs;
  bool each_run_once = true;
  for (const GroupMember* member : ordered) each_run_once = runs.insert(member->run_id).second && each_run_once;
  if (each_run_once) {
    std::stable_partition(ordered.begin(), ordered.end(), [](const GroupMember* m) { return m->plain; });
  }
  std::vector<Command> commands;
  commands.reserve(4);
  // The session may commit without waiting for the WAL flush
  // (relaxed_unsynced_commits); a group with a member that must, waits.
  if (std::any_of(ordered.begin(), ordered.end(), [](const GroupMember* m) { return m->batch->sync_to_disk; })) {
    commands.push_back({"SELECT set_config('synchronous_commit', 'on', true)", Params()});
  }
  // The index of the statement that returns each member's events' seqs.
  std::vector<size_t> answer(ordered.size(), SIZE_MAX);
  // Consecutive checkpoint members go in one statement, up to a second batch
  // of a run already in it, or a plain member (in their order). A run alone
  // has a statement of its own (one of arrays cost PostgreSQL more for one
  // run: chain 1000 went from ~270 to ~400 ms a run); `single` holds their
  // indexes.
  std::vector<GroupCheckpoint> parts;
  std::vector<size_t> part_members;  // the index in `ordered` of each of `parts`
  std::unordered_set<std::string_view> in_statement;
  std::unordered_set<size_t> single;
  std::vector<EarlierCheckpoint> earlier;
  bool generic_plan = false;
  auto end_statement = [&] {
    if (parts.empty()) return;
    if (parts.size() == 1) {
      const GroupCheckpoint& part = parts[0];
      CheckpointCondition condition{part.expected_checkpoint, part.lease_owner, part.lease_epoch};
      answer[part_members[0]] = commands.size();
      single.insert(commands.size());
      commands.push_back(checkpoint_commit(*part.run, *part.checkpoint, *part.row, part.events, *part.steps,
                                           announces(part.run->id), &condition));
    } else {
      // Its plan, made once per connection, for the rest of the transaction:
      // PostgreSQL otherwise plans it anew at every execution (its plan for
      // given arrays looks cheaper than the one for any arrays). And one that
      // finds the runs through their index: made while the table is small,
      // the plan kept scanning all of it for the group's runs (~11% of the
      // server's CPU after a few thousand runs).
      if (!generic_plan) {
        commands.push_back({"SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
                            "set_config('enable_seqscan', 'off', true)",
                            Params()});
        generic_plan = true;
      }
      for (size_t i : part_members) answer[i] = commands.size();
      const bool announce = std::any_of(parts.begin(), parts.end(),
                                        [this](const GroupCheckpoint& part) { return announces(part.run->id); });
      commands.push_back(group_checkpoint_commit(parts, announce));
    }
    parts.clear();
    part_members.clear();
    in_statement.clear();
  };
  for (size_t i = 0; i < ordered.size(); ++i) {
    GroupMember* member = ordered[i];
    const StoreBatch& batch = *member->batch;
    if (member->plain) {
      end_statement();
      open_batch(batch, member->run_id, nullptr, /*explicit_transaction=*/false, &commands);
      size_t event_index = 0;
      std::vector<Command> rest = batch_commands(batch, member->run_id, nullptr, /*explicit_transaction=*/false,
                                                 &event_index);
      if (!batch.events.empty()) answer[i] = commands.size() + event_index;
      for (Command& command : rest) commands.push_back(std::move(command));
      continue;
    }
    if (!in_statement.insert(member->run_id).second) {
      end_statement();
      in_statement.insert(member->run_id);
    }
    GroupCheckpoint part;
    part.run = &*batch.run;
    part.checkpoint = &*batch.checkpoint;
    part.row = &member->prepared.encoded;
    part.events = &batch.events;
    part.steps = &member->steps;
    if (member->prepared.previous) part.expected_checkpoint = member->prepared.previous->link.id;
    if (batch.lease_epoch > 0) {
      part.lease_owner = batch.lease_owner;
      part.lease_epoch = batch.lease_epoch;
    }
    parts.push_back(std::move(part));
    part_members.push_back(i);
    if (member->prepared.earlier) {
      earlier.push_back({&*batch.run, &*batch.earlier_checkpoint, &*member->prepared.earlier, batch.checkpoint->id});
    }
  }
  end_statement();
  // The runs' earlier checkpoints, once their later ones are in.
  if (!earlier.empty()) commands.push_back(earlier_checkpoints_insert(earlier));
  bool rolled_back = false;  // the server answered the group with an error
  Status status = with_connection("write_batch", [&](Connection& conn) -> Status {
    Result<std::vector<Rows>> answered = conn.pipeline("write_batch", commands);
    if (!answered.ok()) {
      rolled_back = !conn.broken();
      return answered.status();
    }
    std::vector<Rows>& results = *answered;
    // Each group statement's seqs, by run.
    std::unordered_map<size_t, std::unordered_map<std::string, std::vector<int64_t>>> statement_seqs;
    for (size_t i = 0; i < ordered.size(); ++i) {
      GroupMember& member = *ordered[i];
      if (answer[i] == SIZE_MAX) {  // a plain batch without events: written
        member.outcome = GroupMember::Outcome::kWritten;
        continue;
      }
      Result<std::vector<int64_t>> seqs = std::vector<int64_t>();
      if (!member.plain && single.count(answer[i]) > 0 && results[answer[i]].count() == 0) {
        member.outcome = GroupMember::Outcome::kRefused;  // its condition did not hold: nothing of it was written
        continue;
      }
      if (member.plain || single.count(answer[i]) > 0) {
        seqs = covered_seqs(results[answer[i]]);
      } else {
        auto parsed = statement_seqs.find(answer[i]);
        if (parsed == statement_seqs.end()) {
          Result<std::unordered_map<std::string, std::vector<int64_t>>> by_run = group_event_seqs(results[answer[i]]);
          if (!by_run.ok()) return by_run.status();  // committed, but unreadable: the members fail
          parsed = statement_seqs.emplace(answer[i], std::move(*by_run)).first;
        }
        auto found = parsed->second.find(member.run_id);
        if (found == parsed->second.end()) {  // its condition did not hold: nothing of it was written
          member.outcome = GroupMember::Outcome::kRefused;
          continue;
        }
        seqs = std::move(found->second);
      }
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
    if (!member.plain) {
      checkpoint_committed(*batch.run, member.prepared);
    } else if (batch.run && is_terminal(batch.run->status)) {
      forget_document(member.run_id);
    }
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

std::vector<Status> PostgresStore::write_batches_as_lane(const std::vector<StoreBatch*>& batches) {
  std::vector<std::unique_ptr<GroupMember>> members;
  std::vector<GroupMember*> taken;
  for (StoreBatch* batch : batches) {
    members.push_back(std::make_unique<GroupMember>());
    GroupMember& member = *members.back();
    member.batch = batch;
    const std::string* run_id = internal::single_run_of(*batch);
    if (run_id == nullptr) {  // not the engine's shape: nothing a lane is handed
      member.result = Status::invalid_argument("write_batches_as_lane: a batch of one run only");
      member.finished = true;
      continue;
    }
    member.run_id = *run_id;
    member.grouped = !batch->create && groupable(*batch);
    if (member.grouped) prepare_member(member);
    taken.push_back(&member);
  }
  write_in_order(taken);
  std::vector<Status> out;
  for (const auto& member : members) out.push_back(member->result);
  return out;
}

}  // namespace orch::postgres
