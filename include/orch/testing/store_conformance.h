// SPDX-License-Identifier: MIT
//
// A conformance suite for Store implementations, so a host that writes its own
// store (PostgreSQL, a key-value service, ...) can check it against the
// contract in orch/store.h with whatever test framework it uses:
//
//   std::vector<std::string> failures = orch::testing::run_store_conformance(
//       [] { return std::make_shared<MyStore>(fresh_test_database()); });
//   for (const auto& f : failures) ADD_FAILURE() << f;   // or REQUIRE(failures.empty())
//
// The suite covers every Store method: runs (create/update/get/delete, the
// idempotency key contract, list_runs filters, order and paging), checkpoints
// (atomic commit, full state read back for every checkpoint, also after
// truncate), pending writes, steps, events (per-run seq from 1, gapless),
// workflows and use from many threads at once.
//
// Values are compared as JSON: types must match exactly (1 is not 1.0), object
// key order is not checked (a store may keep objects in a JSON column type
// that reorders keys).
//
// Leases: every store must let a run's owner claim it again. A store that
// fences (its claim_run_lease returns an epoch above 0) is also checked for
// fencing: epochs bumped by takeovers, a stale owner's batch refused whole
// with "lease lost", renew_leases and list_expired_leases. A store that does
// not fence (epoch 0) must still write unfenced batches.
//
// Thread-safety: run one suite at a time per store factory; the suite itself
// starts threads for its concurrency checks.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orch/export.h"
#include "orch/store.h"

namespace orch::testing {

struct StoreConformanceOptions {
  // The concurrency checks: this many threads, each doing this many appends.
  int threads = 8;
  int events_per_thread = 200;
  // Checkpoints in the long-chain check (a state whose list grows each step).
  int chain_length = 100;
};

// Runs every check, each against a fresh store from `make_store` (which must
// return an empty store each time). Returns one line per failed expectation,
// "<check>: <what went wrong>"; empty means the store conforms. Exceptions
// thrown by the store are caught and reported as failures.
ORCH_EXPORT std::vector<std::string> run_store_conformance(
    const std::function<std::shared_ptr<Store>()>& make_store,
    const StoreConformanceOptions& options = {});

}  // namespace orch::testing
