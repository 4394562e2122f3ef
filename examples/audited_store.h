// SPDX-License-Identifier: MIT
//
// AuditedStore: a host-supplied Store. orch::StoreWrapper forwards every call
// to another store, so a host overrides only what it cares about; this one
// counts the checkpoints the engine commits and keeps an audit log of the runs
// deleted. It passes the Store conformance suite (tests/store_conformance_test.cc).
//
// Thread-safety: as the wrapped store's; the counter and the log are guarded.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "orch/store.h"

class AuditedStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  orch::Status commit_checkpoint(const orch::Checkpoint& cp, const orch::RunRecord& run, bool sync) override {
    ++commits;
    return StoreWrapper::commit_checkpoint(cp, run, sync);
  }
  orch::Status delete_run(const std::string& run_id) override {
    orch::Status s = StoreWrapper::delete_run(run_id);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      deleted_.push_back(run_id);
    }
    return s;
  }
  std::vector<std::string> deleted_runs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return deleted_;
  }

  std::atomic<int> commits{0};

 private:
  mutable std::mutex mu_;
  std::vector<std::string> deleted_;
};
