// SPDX-License-Identifier: MIT
//
// A host that links orch::core only: its own Store (AuditedStore, wrapping the
// in-memory store) and C++ functions as nodes. No broker, HTTP or SQLite
// library is linked (tests/consumer checks the same of an installed orch).
#include <chrono>
#include <cstdio>

#include "audited_store.h"
#include "orch/engine.h"
#include "orch/workflow.h"

int main() {
  auto store = std::make_shared<AuditedStore>(orch::new_memory_store());
  orch::EngineOptions options;
  options.store = store;
  auto engine = orch::Engine::open(options);
  auto parsed = orch::parse_workflow_json(R"({
    "nodes": {"count": {"type": "task"},
              "mark":  {"type": "transform", "updates": {"step": "marked"}}},
    "edges": [["__start__", "count"], ["count", "mark"], ["mark", "__end__"]]})");
  if (!engine.ok() || !parsed.ok()) return 1;
  auto workflow = orch::bind_functions(*parsed, {{"count", [](const orch::NodeCall& call) -> orch::Result<orch::NodeOutput> {
    return orch::NodeOutput(orch::Value::object({{"count", call.state["count"].get_int(0) + 1}}));
  }}});
  if (!workflow.ok()) return std::fprintf(stderr, "%s\n", workflow.status().to_string().c_str()), 1;
  auto run = (*engine)->start_run(*workflow, {});
  if (!run.ok()) return 1;
  auto done = (*engine)->wait(*run, std::chrono::seconds(10));
  if (!done.ok()) return 1;
  orch::Status deleted = (*engine)->delete_run(*run);
  std::printf("status %s, state %s, %d checkpoints committed, delete: %s, audit log: %zu run(s)\n",
              std::string(orch::run_status_name(done->status)).c_str(), done->state.to_json().c_str(),
              store->commits.load(), deleted.to_string().c_str(), store->deleted_runs().size());
  return done->status == orch::RunStatus::kCompleted && store->commits >= 3 && deleted.ok() &&
                 store->deleted_runs().size() == 1
             ? 0
             : 1;
}
