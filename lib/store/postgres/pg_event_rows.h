// SPDX-License-Identifier: MIT
//
// How the PostgreSQL store keeps a run's events in rows (schema 7): one row
// per write, not per event. A superstep writes ~7 events at once, and each
// row of its own cost PostgreSQL a heap tuple, an index entry and their WAL
// (issue #21).
//
// A row covers seqs last_seq - event_count + 1 .. last_seq; it is found by
// (run_pk, last_seq), the table's unique key, so "the events after seq s" are
// the rows with last_seq > s (the first of them may start at or before s).
//   event_count 1: the row is the event: kind, data (its JSON text) and
//     created_at_ms. With state_checkpoint_id set, the data lacks its last
//     key, "state", which is that checkpoint's state (see
//     internal::without_checkpoint_state). Every row written up to schema 6
//     has this shape.
//   event_count n >= 2 (a batch row): kind is '', created_at_ms the first
//     event's, state_checkpoint_id the checkpoint whose state the events
//     stored without one lack ('' when none is), and data a JSON array of
//     the n events in seq order, each an array
//       [kind, data]                       stored whole, at created_at_ms
//       [kind, data, ms]                   ms after created_at_ms
//       [kind, data, ms, 1]                data lacks "state" (as above)
//     JSON rather than a binary packing: PostgreSQL stores it as text, byte
//     for byte, and a row reads back with one parse.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "orch/status.h"
#include "orch/store.h"
#include "store/postgres/pg_connection.h"

namespace orch::postgres {

// One events row's columns, as written.
struct EventRow {
  int64_t count = 0;
  std::string kind;
  std::string data;
  int64_t created_at_ms = 0;
  std::string state_checkpoint_id;
};

// The row holding `events` (one or more, in seq order). With the
// `checkpoint` written in the same transaction (null: none), an event whose
// data ends with that checkpoint's very state is stored without it.
EventRow encode_event_row(const std::vector<EventRecord>& events, const Checkpoint* checkpoint);

// An event read back from a row.
struct StoredEvent {
  EventRecord event;
  // The event's data lacks its "state": checkpoint state_checkpoint_id's
  // (complete it with data.set("state", ...), which puts it last again).
  bool without_state = false;
  std::string state_checkpoint_id;
};

// The columns read_event_row reads, in order (a SELECT list of table events).
extern const char* const kEventSelectList;
// Appends the events of row `row` (kEventSelectList from column `first`) of
// run `run_id` to *out, in seq order. Internal naming the row when it does
// not read back.
Status read_event_row(const Rows& rows, int row, int first, const std::string& run_id, std::vector<StoredEvent>* out);

// The seqs a write's rows got, from rows of (last_seq, event_count) in
// columns `first`, `first` + 1: every seq each row covers, ascending.
Result<std::vector<int64_t>> covered_seqs(const Rows& rows, int first = 0);

}  // namespace orch::postgres
