// SPDX-License-Identifier: MIT
//
// How the database stores (SQLite, PostgreSQL) lay out checkpoints:
// incrementally. Shared by both, so a checkpoint costs the same bytes on
// either and the format has one definition.
//
// The part of a checkpoint that grows with the run (state, metadata, completed
// nodes) forms one JSON "document":
//
//   {"state": {...}, "metadata": {...}, "completed_nodes": ["a", "b"]}
//
// Each row of a store's `checkpoints` table stores, in `body`, either
//   - kind 'snapshot': the document itself, or
//   - kind 'delta': the value delta (value_delta.h) from the document of the
//     row before it in the same run (seq - 1) to its own.
// So a row's document is its chain's snapshot (at `base_seq`) with the deltas
// of rows base_seq+1 .. seq applied in order. Deltas are taken per key, down
// nested objects, and an array that only grew stores only its new items: a
// step that appends one message to a long history costs one message.
//
// When to take a snapshot instead of a delta: when the deltas since the last
// snapshot, this one included, would add up to more bytes than that snapshot
// (so snapshots never cost more than the deltas they save reading, and total
// storage stays linear in the size of the changes), or when the chain would
// exceed max_delta_chain rows (which bounds the rows read to rebuild one).
// The first checkpoint of a run is always a snapshot. A store may let the
// deltas add up to `min_chain_bytes` even after a smaller snapshot: for a
// small state a delta is nearly as long as a snapshot, and taking a snapshot
// every other row saved next to nothing in reading. Only the choice changes,
// not the format: every store reads the rows of every other.
//
// Bookkeeping columns: `chain_bytes` (delta bytes since the snapshot, this row
// included; 0 for a snapshot) and `base_bytes` (the snapshot's size) make the
// decision without reading the chain.
// Exported for the store components (orch::sqlite, orch::postgres); not public API.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/store.h"
#include "orch/value.h"

namespace orch::checkpoint_codec {

inline constexpr std::string_view kSnapshotKind = "snapshot";
inline constexpr std::string_view kDeltaKind = "delta";

// Where a checkpoint row sits in its run's chain.
struct ChainLink {
  std::string id;
  int64_t seq = 0;
  int64_t base_seq = 0;
  int64_t chain_bytes = 0;
  int64_t base_bytes = 0;
};

// The document of `checkpoint`; values share storage with it.
ORCH_EXPORT Value checkpoint_document(const Checkpoint& checkpoint);
// Sets state, metadata and completed_nodes of `*checkpoint` from `document`.
ORCH_EXPORT Status unpack_document(const Value& document, Checkpoint* checkpoint);

struct EncodedCheckpoint {
  ChainLink link;
  bool snapshot = true;
  std::string body;  // JSON text; its size is what the chain's byte counts count
  Value body_value;  // the same, parsed: for a store that keeps another form of it
};

// Encodes the row for checkpoint `id` with `document`, following `previous`
// (the run's last row, whose document is `previous_document`), or as the
// run's first row when `previous` is null.
ORCH_EXPORT EncodedCheckpoint encode_checkpoint(const std::string& id, const Value& document,
                                    const ChainLink* previous, const Value* previous_document,
                                    int max_delta_chain, int64_t min_chain_bytes = 0);

// Rebuilds documents from a run's rows fed in seq order, starting at a
// snapshot. Reports Internal (naming the run and seq) for a chain that does
// not hold together: a delta with no row before it, a gap, malformed JSON, a
// delta that does not apply.
class ORCH_EXPORT DocumentBuilder {
 public:
  explicit DocumentBuilder(std::string run_id) : run_id_(std::move(run_id)) {}

  Status add(int64_t seq, std::string_view kind, std::string_view body);
  // The same, for a body already parsed (a store that keeps it in another form).
  Status add_value(int64_t seq, std::string_view kind, Value body);
  // REQUIRES: add() succeeded at least once.
  const Value& document() const { return document_; }

 private:
  Status corrupt(int64_t seq, const std::string& why) const;

  std::string run_id_;
  Value document_;
  int64_t last_seq_ = -1;
  bool started_ = false;
};

}  // namespace orch::checkpoint_codec
