// SPDX-License-Identifier: MIT
//
// WorkflowCache: the validated, parsed form of the stored workflows runs are
// started from. Starting a run of a stored workflow otherwise validates and
// parses its definition again, and the engine, handed a new Workflow object,
// compiles it again (it keeps the compiled form per Workflow object): about
// a twentieth of `orch serve`'s CPU under load. An entry is found by workflow
// id and used only while the definition is equal to the one it was made
// from, so an updated workflow is parsed afresh.
//
// Thread-safety: all members may be called from many threads at once.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "orch/status.h"
#include "orch/value.h"
#include "orch/workflow.h"

namespace orch::server {

class WorkflowCache {
 public:
  struct Entry {
    Value definition;                      // what it was made from
    std::vector<ValidationIssue> issues;   // validate_workflow(definition)
    Result<std::shared_ptr<const Workflow>> workflow = Status::internal("not parsed");  // when valid
  };

  // The entry for workflow `id` with this `definition`, made now if there is
  // none or the definition changed.
  std::shared_ptr<const Entry> get(const std::string& id, const Value& definition);
  // An entry made for `definition` alone (not kept).
  static std::shared_ptr<const Entry> make(const Value& definition);

 private:
  static constexpr size_t kMaxEntries = 256;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_;
};

}  // namespace orch::server
