// SPDX-License-Identifier: MIT
//
// A host-supplied Store: orch::StoreWrapper forwards every call to another
// store, so a host overrides only what it cares about. This one counts the
// checkpoints the engine commits and refuses to delete runs (an audit log).
#include <atomic>
#include <chrono>
#include <cstdio>

#include "orch/orch.h"

class AuditedStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  orch::Status commit_checkpoint(const orch::Checkpoint& cp, const orch::RunRecord& run, bool sync) override {
    ++commits;
    return StoreWrapper::commit_checkpoint(cp, run, sync);
  }
  orch::Status delete_run(const std::string& run_id) override {
    return orch::Status::failed_precondition("run " + run_id + " is kept for audit");
  }

  std::atomic<int> commits{0};
};

int main() {
  auto store = std::make_shared<AuditedStore>(orch::new_memory_store());
  orch::EngineOptions options;
  options.store = store;
  auto engine = orch::Engine::open(options);
  auto workflow = orch::parse_workflow_json(R"({
    "nodes": {"a": {"type": "transform", "updates": {"step": "a"}},
              "b": {"type": "transform", "updates": {"step": "b"}}},
    "edges": [["__start__", "a"], ["a", "b"], ["b", "__end__"]]})");
  if (!engine.ok() || !workflow.ok()) return 1;
  auto run = (*engine)->start_run(*workflow, {});
  auto done = (*engine)->wait(*run, std::chrono::seconds(10));
  std::printf("status %s, %d checkpoints committed, delete says: %s\n",
              std::string(orch::run_status_name(done->status)).c_str(), store->commits.load(),
              (*engine)->delete_run(*run).to_string().c_str());
  return done->status == orch::RunStatus::kCompleted && store->commits >= 3 ? 0 : 1;
}
