// SPDX-License-Identifier: MIT
//
// Moving a store's contents to another store (`orch export` / `orch import`):
// e.g. one node's SQLite file into the PostgreSQL database several instances
// will share. The format is JSON Lines, one record a line, so neither side
// holds more than one record in memory:
//
//   {"orch_export":1,"orch_version":"..."}                    always first
//   {"type":"workflow","workflow":{...}}
//   {"type":"host_record","collection":"workers","id":"w1","record":{...}}
//   {"type":"run","run":{...}}                                 then its parts:
//   {"type":"checkpoint","checkpoint":{...}}                   oldest first
//   {"type":"pending_write","pending_write":{...}}
//   {"type":"step","step":{...}}
//   {"type":"event","event":{...}}                             in seq order
//   {"type":"end","runs":N,...}                                 always last
//
// A run's parts follow its run line and name it (run_id). The last line lets
// an import tell a complete file from a cut one: a file without it is
// refused at its end (what came before stays imported, and importing the
// whole file again completes it: records already there are skipped).
//
// Runs at rest move: finished ones and interrupted ones (paused, waiting for
// input, resumable on the target). Running and pending runs belong to the
// engine executing them: they move only with ExportOptions::include_active,
// for a source no server is using any more; the target's engine then resumes
// them as it would after a crash.
//
// Thread-safety: none of its own; the stores must allow their calls.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>

#include "orch/store.h"

namespace orch::server {

struct TransferCounts {
  int64_t workflows = 0;
  int64_t host_records = 0;
  int64_t runs = 0;
  int64_t checkpoints = 0;
  int64_t pending_writes = 0;
  int64_t steps = 0;
  int64_t events = 0;
  // Import only: already in the target (same id), left as they are.
  int64_t skipped_workflows = 0;
  int64_t skipped_runs = 0;
  // Export only: running or pending runs left out (see include_active).
  int64_t active_runs_left = 0;
};

struct ExportOptions {
  bool include_active = false;
};

// Writes every workflow, worker record and run at rest of `store` to `out`.
Status export_store(Store& store, std::ostream& out, const ExportOptions& options, TransferCounts* counts);

struct ImportOptions {
  // Longest line accepted; a longer one fails the import with its line
  // number (a run state above this cannot be moved this way).
  size_t max_line_bytes = 256u << 20;
};

// Reads an export from `in` into `store`. Records whose id the store already
// has are skipped (counted), so a cut import can be run again. Errors name
// the line; everything before it stays imported.
Status import_store(Store& store, std::istream& in, const ImportOptions& options, TransferCounts* counts);

}  // namespace orch::server
