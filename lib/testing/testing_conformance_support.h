// SPDX-License-Identifier: MIT
//
// Shared pieces of the Store conformance suite (include/orch/testing/
// store_conformance.h): the failure collector, sample records and the
// comparisons. Internal to the library.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "orch/status.h"
#include "orch/store.h"
#include "orch/testing/store_conformance.h"

namespace orch::testing::conformance {

// Collects the failures of one check. Thread-safe, so the concurrency checks
// can report from their threads.
class Checker {
 public:
  Checker(std::string check, std::vector<std::string>* failures, std::mutex* mu)
      : check_(std::move(check)), failures_(failures), mu_(mu) {}

  void fail(const std::string& what);
  // Each returns whether the expectation held, so callers can stop early.
  bool expect(bool condition, const std::string& what);
  bool expect_ok(const Status& status, const std::string& call);
  bool expect_code(const Status& status, StatusCode code, const std::string& call);
  template <typename T>
  bool expect_ok(const Result<T>& result, const std::string& call) {
    return expect_ok(result.ok() ? Status() : result.status(), call);
  }
  template <typename T>
  bool expect_code(const Result<T>& result, StatusCode code, const std::string& call) {
    if (result.ok()) {
      fail(call + ": expected " + std::string(status_code_name(code)) + ", got a value");
      return false;
    }
    return expect_code(result.status(), code, call);
  }

  // Field-by-field comparisons; each failure names `context` and the field.
  bool same_run(const RunRecord& expected, const RunRecord& actual, const std::string& context);
  bool same_checkpoint(const Checkpoint& expected, const Checkpoint& actual,
                       const std::string& context);
  bool same_step(const StepRecord& expected, const StepRecord& actual, const std::string& context);
  bool same_value(const Value& expected, const Value& actual, const std::string& context);

 private:
  std::string check_;
  std::vector<std::string>* failures_;
  std::mutex* mu_;
  int reported_ = 0;
};

// JSON equality with exact types (1 is not 1.0) and key order ignored.
bool same_json(const Value& a, const Value& b);

// A run with every field set to something distinctive.
RunRecord sample_run(const std::string& id);
StepRecord sample_step(const std::string& run_id, const std::string& id, const std::string& node);
// A checkpoint `version` of `run_id` with id "<run_id>-cp<version>".
Checkpoint sample_checkpoint(const std::string& run_id, int64_t version, Value state);

// Creates `run_id`; reports a failure and returns false if that fails.
bool create(Store& store, Checker& c, const RunRecord& run);

// The individual checks.
void check_runs_crud(Store& store, Checker& c);
void check_idempotency_keys(Store& store, Checker& c);
void check_list_runs(Store& store, Checker& c);
void check_delete_run(Store& store, Checker& c);
void check_leases(Store& store, Checker& c);
void check_lease_fencing(Store& store, Checker& c);
void check_pending_writes(Store& store, Checker& c);
void check_steps(Store& store, Checker& c);
void check_events(Store& store, Checker& c);
void check_workflows(Store& store, Checker& c);
void check_host_records(Store& store, Checker& c);
void check_write_batch(Store& store, Checker& c);
void check_write_batch_create(Store& store, Checker& c);
void check_write_batch_two_checkpoints(Store& store, Checker& c);
void check_checkpoints(Store& store, Checker& c);
void check_truncate_checkpoints(Store& store, Checker& c);
void check_long_checkpoint_chain(Store& store, Checker& c, int length);
void check_commit_atomicity(Store& store, Checker& c);
void check_concurrent_events(Store& store, Checker& c, const StoreConformanceOptions& options);
void check_concurrent_runs(Store& store, Checker& c, const StoreConformanceOptions& options);
void check_write_batch_async(Store& store, Checker& c, const StoreConformanceOptions& options);

}  // namespace orch::testing::conformance
