// SPDX-License-Identifier: MIT
// PostgresStore::write_batch: a superstep's writes for one run (steps,
// pending writes, checkpoint or run update, events) in one transaction, sent
// as one libpq pipeline: the run's lock and every statement go out together,
// and their results come back after a single round trip; the pipeline's sync
// point commits them.
// The common shape, a superstep's checkpoint with its events, is written
// with other runs' in one transaction instead (pg_store_group.cc); this
// file's path takes the rest, and whatever a group refused.
//
// A checkpoint is encoded before a connection is taken, as a delta from the
// run's cached latest document (or as its first snapshot when none is
// cached). The pipeline then checks that the run's latest checkpoint still
// is the one the delta follows; when it is not (another instance wrote the
// run, the process restarted, a truncate), the transaction is rolled back
// and the batch is written again the slow way: lock the run, read its chain,
// encode against it, write.
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/postgres/pg_event_rows.h"
#include "store/postgres/pg_group_statement.h"
#include "store/postgres/pg_rows.h"
#include "store/postgres/pg_store_impl.h"
#include "store/store_batch.h"

namespace orch::postgres {
namespace {

using checkpoint_codec::checkpoint_document;
using checkpoint_codec::encode_checkpoint;
using checkpoint_codec::kDeltaKind;
using checkpoint_codec::kSnapshotKind;

// The run's progress, its new checkpoint row and the end of its pending
// writes, in one statement. $1..$11: add_run_progress; $12..$22: the row.
const std::string& checkpoint_commit_sql() {
  static const std::string sql = std::string("WITH run AS (") + kRunProgressSetSql +
                                 ", latest_checkpoint_id = $12 WHERE id = $1 RETURNING pk), dropped AS (DELETE FROM "
                                 "pending_writes WHERE run_pk = (SELECT pk FROM run)) INSERT INTO checkpoints (id, run_pk, run_id, seq, parent_id, step_id, "
                                 "version, created_at_ms, kind, base_seq, chain_bytes, base_bytes, body) SELECT $12, "
                                 "run.pk, $1, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22 FROM run";
  return sql;
}

}  // namespace

std::vector<const StepRecord*> last_step_versions(const std::vector<StepRecord>& steps) {
  std::vector<const StepRecord*> out;
  if (steps.size() == 1) {
    out.push_back(&steps[0]);
  } else if (!steps.empty()) {
    std::unordered_map<std::string, size_t> last_of;
    for (size_t i = 0; i < steps.size(); ++i) last_of[steps[i].id] = i;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (last_of[steps[i].id] == i) out.push_back(&steps[i]);
    }
  }
  return out;
}

// With `events` (not empty), the batch's events go in the same statement
// (checkpoint_events_sql): the run's row is updated once, not twice; so do
// `steps` (not empty), statements less. With `condition` (events not
// empty), the statement writes only when the run's latest checkpoint is
// `expected` and the batch's writer holds the run (group commit).
Command checkpoint_commit(const RunRecord& run, const Checkpoint& cp, const EncodedCheckpoint& row,
                          const std::vector<EventRecord>* events, const std::vector<const StepRecord*>& steps,
                          bool announce, const CheckpointCondition* condition) {
  Params p;
  add_run_progress(p, run, run.state.shares_storage_with(cp.state) || run.state == cp.state);
  p.text(cp.id).integer(row.link.seq).text(cp.parent_id).text(cp.step_id);
  p.integer(cp.version).integer(cp.created_at_ms).text(row.snapshot ? kSnapshotKind : kDeltaKind);
  p.integer(row.link.base_seq).integer(row.link.chain_bytes).integer(row.link.base_bytes).text(row.body);
  if (events == nullptr) return {checkpoint_commit_sql(), std::move(p)};
  add_event_row(p, *events, &cp);
  if (!steps.empty()) add_step_arrays(p, steps);
  if (condition != nullptr) {
    add_checkpoint_condition(p, condition->expected_checkpoint, condition->lease_owner, condition->lease_epoch);
  }
  return {checkpoint_events_sql(announce, !steps.empty(), condition != nullptr), std::move(p)};
}

// write_batch's path for a batch that joins no group (write_batch, in
// pg_store_group.cc, sends the rest to a group).
Status PostgresStore::write_alone(StoreBatch& batch, const std::string& run_id_ref) {
  const std::string* run_id = &run_id_ref;
  const bool only_create =
      batch.steps.empty() && batch.pending_writes.empty() && !batch.checkpoint && !batch.run && batch.events.empty();
  std::vector<int64_t> seqs;
  if (batch.create && only_create) {
    return create_claimed_run(batch.create->run, batch.create->owner, batch.create->lease_ms);
  }
  if (batch.create) {
    // The run's insert opens the batch's pipeline: one commit. When that
    // fails (a taken id or key, which create_claimed_run tells apart, or
    // anything else), nothing was written: the run is created on its own,
    // then the batch written.
    Status merged = write_run_batch(batch, *run_id, &seqs, /*create=*/true);
    if (merged.code() == StatusCode::kUnavailable) return merged;  // it may have committed
    if (!merged.ok()) {
      seqs.clear();
      ORCH_RETURN_IF_ERROR(create_claimed_run(batch.create->run, batch.create->owner, batch.create->lease_ms));
      ORCH_RETURN_IF_ERROR(write_run_batch(batch, *run_id, &seqs));
    }
  } else {
    ORCH_RETURN_IF_ERROR(write_run_batch(batch, *run_id, &seqs));
  }
  for (size_t i = 0; i < seqs.size() && i < batch.events.size(); ++i) batch.events[i].seq = seqs[i];
  return Status();
}

Status PostgresStore::commit_checkpoint(const Checkpoint& checkpoint, const RunRecord& run, bool sync_to_disk) {
  if (checkpoint.run_id != run.id) {
    return Status::invalid_argument("checkpoint " + checkpoint.id + " belongs to run " + checkpoint.run_id +
                                    ", not " + run.id);
  }
  StoreBatch batch;
  batch.checkpoint = checkpoint;
  batch.run = run;
  batch.sync_to_disk = sync_to_disk;
  return write_run_batch(batch, run.id, nullptr);
}

void PostgresStore::open_batch(const StoreBatch& batch, const std::string& run_id, const std::string* expected_checkpoint,
                               bool explicit_transaction, std::vector<Command>* commands) {
  if (explicit_transaction) commands->push_back({"BEGIN", Params()});
  // The session may commit without waiting for the WAL flush (see
  // PostgresStoreOptions::relaxed_unsynced_commits); this one must wait.
  if (batch.sync_to_disk) commands->push_back({"SELECT set_config('synchronous_commit', 'on', true)", Params()});
  // Serializes the run's writers (seqs, the checkpoint chain) across
  // connections and instances; a missing run aborts the pipeline (NotFound),
  // and so does a latest checkpoint other than the expected one (Aborted).
  // A fenced batch (StoreBatch::lease_epoch) locks through the lease check:
  // a writer that lost the run aborts the pipeline (OR410) before any write.
  Params lock;
  lock.text(run_id);
  if (batch.lease_epoch > 0) {
    lock.text(batch.lease_owner).integer(batch.lease_epoch);
    if (expected_checkpoint != nullptr) {
      lock.text(*expected_checkpoint);
      commands->push_back({"SELECT orch_lock_run_fenced($1, $2, $3, $4)", std::move(lock)});
    } else {
      commands->push_back({"SELECT orch_lock_run_fenced($1, $2, $3)", std::move(lock)});
    }
  } else if (expected_checkpoint != nullptr) {
    lock.text(*expected_checkpoint);
    commands->push_back({"SELECT orch_lock_run($1, $2)", std::move(lock)});
  } else {
    commands->push_back({"SELECT orch_lock_run($1)", std::move(lock)});
  }
}

std::vector<Command> PostgresStore::batch_commands(const StoreBatch& batch, const std::string& run_id,
                                                   const PreparedCheckpoint* checkpoint, bool explicit_transaction,
                                                   size_t* event_index) {
  std::vector<Command> commands;
  // The checkpoint drops the run's pending writes in this same transaction,
  // so with one in the batch there is no point writing them.
  if (checkpoint == nullptr) {
    for (const PendingWrite& write : batch.pending_writes) {
      Params p;
      add_pending_write(p, write);
      commands.push_back({pending_write_insert_sql(), std::move(p)});
    }
  }
  // A step written twice in one batch (started, then completed): only its
  // last version needs writing.
  std::vector<const StepRecord*> steps = last_step_versions(batch.steps);
  // A checkpoint takes the events' seqs in its own statement, and the steps
  // ride along (the whole batch is one statement after the lock).
  const bool events_with_checkpoint = checkpoint != nullptr && !batch.events.empty();
  if (checkpoint != nullptr) {
    std::vector<const StepRecord*> riding;
    if (events_with_checkpoint) riding.swap(steps);
    *event_index = commands.size();
    commands.push_back(checkpoint_commit(*batch.run, *batch.checkpoint, checkpoint->encoded,
                                         events_with_checkpoint ? &batch.events : nullptr, riding,
                                         announces(run_id)));
    if (checkpoint->earlier) {
      commands.push_back(earlier_checkpoints_insert(
          {{&*batch.run, &*batch.earlier_checkpoint, &*checkpoint->earlier, batch.checkpoint->id}}));
    }
  } else if (batch.run) {
    static const std::string kUpdate = kRunColumns.update_sql();
    Params p;
    add_run(p, *batch.run);
    commands.push_back({kUpdate, std::move(p)});
  }
  for (const StepRecord* step : steps) {
    Params p;
    add_step(p, *step);
    commands.push_back({step_upsert_sql(), std::move(p)});
  }
  if (!batch.events.empty() && !events_with_checkpoint) {
    *event_index = commands.size();
    commands.push_back({event_append_sql(announces(run_id)), event_append_params(run_id, batch.events)});
  }
  if (explicit_transaction) commands.push_back({"COMMIT", Params()});
  return commands;
}

Status PostgresStore::write_run_batch(const StoreBatch& batch, const std::string& run_id, std::vector<int64_t>* seqs,
                                      bool create) {
  // Encoding needs no connection: done first, against the cached document.
  if (batch.earlier_checkpoint && !batch.checkpoint) return internal::earlier_checkpoint_alone();
  std::optional<PreparedCheckpoint> prepared;
  if (batch.checkpoint) {
    prepared.emplace();
    prepared->document = checkpoint_document(*batch.checkpoint);
    // A run created in this transaction has no checkpoint: whatever the
    // cache holds under its id is not its chain.
    CachedDocument previous;
    if (!create && cached_document(run_id, &previous)) prepared->previous = std::move(previous);
    encode_prepared(batch, &*prepared);
  }
  auto take_seqs = [&](const std::vector<Rows>& results, size_t index) -> Status {
    if (seqs == nullptr || batch.events.empty()) return Status();
    ORCH_ASSIGN_OR_RETURN(*seqs, covered_seqs(results[index]));
    if (seqs->size() != batch.events.size()) {
      return Status::internal("write_batch: the events of run " + run_id + " got " + std::to_string(seqs->size()) +
                              " seqs, not " + std::to_string(batch.events.size()));
    }
    return Status();
  };

  Status status = with_connection("write_batch", [&](Connection& conn) -> Status {
    // Fast path: one pipeline, which is one transaction without BEGIN and
    // COMMIT: the server runs a pipeline's statements up to its sync point
    // in an implicit transaction, committed there, and rolled back (the
    // statements after a failed one skipped) when one fails.
    {
      std::vector<Command> commands;
      if (create) {
        commands.push_back(run_insert(batch.create->run, &batch.create->owner, batch.create->lease_ms,
                                      /*conflict_fails=*/true));
      }
      const std::string expected = prepared && prepared->previous ? prepared->previous->link.id : std::string();
      if (create) {
        // The run's row, inserted by this transaction, is its own until it
        // commits, leased to the batch's writer, and without checkpoints:
        // nothing to lock or check.
        if (batch.sync_to_disk) commands.push_back({"SELECT set_config('synchronous_commit', 'on', true)", Params()});
      } else {
        open_batch(batch, run_id, prepared ? &expected : nullptr, /*explicit_transaction=*/false, &commands);
      }
      size_t event_index = 0;
      std::vector<Command> rest = batch_commands(batch, run_id, prepared ? &*prepared : nullptr,
                                                 /*explicit_transaction=*/false, &event_index);
      event_index += commands.size();
      for (Command& command : rest) commands.push_back(std::move(command));
      Result<std::vector<Rows>> results = conn.pipeline("write_batch", commands);
      if (results.ok()) return take_seqs(*results, event_index);
      if (create || !prepared || results.status().code() != StatusCode::kAborted || lease_lost(results.status())) {
        return results.status();
      }
    }
    // Slow path: the run's chain moved on without this instance. Lock the
    // run, read its latest checkpoint, encode against it, write: two
    // pipelines, so one transaction from BEGIN to COMMIT.
    std::vector<Command> opening;
    open_batch(batch, run_id, nullptr, /*explicit_transaction=*/true, &opening);
    Params link;
    link.text(run_id);
    opening.push_back({kLatestLinkSql, std::move(link)});
    ORCH_ASSIGN_OR_RETURN(std::vector<Rows> opened, conn.pipeline("write_batch", opening));
    const Rows& latest = opened.back();
    prepared->previous.reset();
    if (latest.count() > 0) {
      ORCH_ASSIGN_OR_RETURN(ChainLink last, read_link(latest, 0));
      ORCH_ASSIGN_OR_RETURN(Value document, load_document(conn, run_id, last.id));
      prepared->previous = CachedDocument{std::move(last), std::move(document)};
    }
    encode_prepared(batch, &*prepared);
    size_t event_index = 0;
    std::vector<Command> rest = batch_commands(batch, run_id, &*prepared, /*explicit_transaction=*/true, &event_index);
    ORCH_ASSIGN_OR_RETURN(std::vector<Rows> results, conn.pipeline("write_batch", rest));
    return take_seqs(results, event_index);
  });
  if (!status.ok()) return status;
  if (prepared) {
    checkpoint_committed(*batch.run, *prepared);
  } else if (batch.run && is_terminal(batch.run->status)) {
    forget_document(run_id);
  }
  return Status();
}

void PostgresStore::encode_prepared(const StoreBatch& batch, PreparedCheckpoint* prepared) const {
  const ChainLink* link = prepared->previous ? &prepared->previous->link : nullptr;
  const Value* document = prepared->previous ? &prepared->previous->document : nullptr;
  Value earlier_document;
  prepared->earlier.reset();
  if (batch.earlier_checkpoint) {
    earlier_document = checkpoint_document(*batch.earlier_checkpoint);
    prepared->earlier = encode_checkpoint(batch.earlier_checkpoint->id, earlier_document, link, document,
                                          options_.max_delta_chain);
    link = &prepared->earlier->link;
    document = &earlier_document;
  }
  prepared->encoded =
      encode_checkpoint(batch.checkpoint->id, prepared->document, link, document, options_.max_delta_chain);
}

void PostgresStore::checkpoint_committed(const RunRecord& run, PreparedCheckpoint& prepared) {
  // A run that ended is rarely committed to again (only a replay or retry
  // does, and a cache miss just reads the chain): free its memory.
  if (is_terminal(run.status)) {
    forget_document(run.id);
  } else {
    cache_document(run.id, CachedDocument{prepared.encoded.link, std::move(prepared.document)});
  }
}

}  // namespace orch::postgres
