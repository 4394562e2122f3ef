// SPDX-License-Identifier: MIT
// The Store conformance suite's runner: each check on a fresh store.
#include <exception>
#include <mutex>

#include "orch/testing/store_conformance.h"
#include "testing/testing_conformance_support.h"

namespace orch::testing {

std::vector<std::string> run_store_conformance(
    const std::function<std::shared_ptr<Store>()>& make_store,
    const StoreConformanceOptions& options) {
  using namespace conformance;  // NOLINT(google-build-using-namespace): the checks
  struct Check {
    const char* name;
    std::function<void(Store&, Checker&)> run;
  };
  const std::vector<Check> checks = {
      {"runs", check_runs_crud},
      {"idempotency_keys", check_idempotency_keys},
      {"list_runs", check_list_runs},
      {"delete_run", check_delete_run},
      {"leases", check_leases},
      {"lease_fencing", check_lease_fencing},
      {"pending_writes", check_pending_writes},
      {"steps", check_steps},
      {"events", check_events},
      {"workflows", check_workflows},
      {"host_records", check_host_records},
      {"write_batch", check_write_batch},
      {"write_batch_create", check_write_batch_create},
      {"write_batch_two_checkpoints", check_write_batch_two_checkpoints},
      {"checkpoints", check_checkpoints},
      {"truncate_checkpoints", check_truncate_checkpoints},
      {"long_checkpoint_chain",
       [&](Store& s, Checker& c) { check_long_checkpoint_chain(s, c, options.chain_length); }},
      {"commit_atomicity", check_commit_atomicity},
      {"concurrent_events", [&](Store& s, Checker& c) { check_concurrent_events(s, c, options); }},
      {"concurrent_runs", [&](Store& s, Checker& c) { check_concurrent_runs(s, c, options); }},
      {"write_batch_async", [&](Store& s, Checker& c) { check_write_batch_async(s, c, options); }},
  };

  std::vector<std::string> failures;
  std::mutex mu;
  for (const Check& check : checks) {
    Checker checker(check.name, &failures, &mu);
    try {
      std::shared_ptr<Store> store = make_store();
      if (store == nullptr) {
        checker.fail("make_store returned null");
        continue;
      }
      check.run(*store, checker);
    } catch (const std::exception& e) {
      checker.fail(std::string("threw: ") + e.what());
    } catch (...) {
      checker.fail("threw a non-std exception");
    }
  }
  return failures;
}

}  // namespace orch::testing
