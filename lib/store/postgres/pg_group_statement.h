// SPDX-License-Identifier: MIT
//
// The statement of a group commit (pg_store_group.cc): the superstep
// checkpoints of several runs, each with its events and steps, in one
// statement. One statement per run cost PostgreSQL its per-statement work
// (binding, opening every table and index the statement writes, setting up
// and tearing down the executor) once per run; with a group of runs it is
// paid once per group.
//
// Each run's part is conditional, as a run's own would be: its UPDATE of the
// run row matches only while the writer holds the run's lease at its epoch
// and the run's latest checkpoint is the one its delta follows (re-checked
// against the row's newest version once the row's lock is granted). A
// refused run writes nothing and returns nothing; the others are written.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "orch/store.h"
#include "store/checkpoint_codec.h"
#include "store/postgres/pg_connection.h"

namespace orch::postgres {

// One run's part of a group statement.
struct GroupCheckpoint {
  const RunRecord* run = nullptr;
  const Checkpoint* checkpoint = nullptr;
  const checkpoint_codec::EncodedCheckpoint* row = nullptr;
  const std::vector<EventRecord>* events = nullptr;  // not empty
  const std::vector<const StepRecord*>* steps = nullptr;
  // The condition: the run's latest checkpoint ('' : none), and with
  // `lease_epoch` > 0 its lease holder at that epoch.
  std::string expected_checkpoint;
  std::string lease_owner;
  int64_t lease_epoch = 0;
};

// The statement writing `parts` (different runs, each at most once; their
// rows are locked in run id order). Returns one row (run_id, last_seq,
// event_count) per run written: its events' row (pg_event_rows.h). With
// `announce`, the runs written announce their events, in one notification
// (pg_change_watch.h).
Command group_checkpoint_commit(const std::vector<GroupCheckpoint>& parts, bool announce);

// A run's earlier checkpoint (StoreBatch::earlier_checkpoint): written by
// its own statement after the one that wrote the run's later checkpoint.
struct EarlierCheckpoint {
  const RunRecord* run = nullptr;
  const Checkpoint* checkpoint = nullptr;
  const checkpoint_codec::EncodedCheckpoint* row = nullptr;
  std::string later_id;  // the checkpoint that follows it
};

// The statement inserting `rows`, each only when its run's latest checkpoint
// is now its `later_id`: the statement before it in the transaction wrote
// that one (a refused run's did not, and gets no row either). One statement
// for a group's runs; their checkpoints' seqs leave room for them.
Command earlier_checkpoints_insert(const std::vector<EarlierCheckpoint>& rows);

// The seqs the runs' events got, by run id, ascending (a refused run has
// none).
Result<std::unordered_map<std::string, std::vector<int64_t>>> group_event_seqs(const Rows& rows);

}  // namespace orch::postgres
