// SPDX-License-Identifier: MIT
//
// A three-node workflow with C++ functions as nodes, run by the embedded
// engine over the in-memory store. It prints its graph as Mermaid, then the run:
//
//   __start__ -> draft -> review --(ok)--> __end__
//                  ^         |
//                  +--(redo)-+
//
// `review` asks for one more draft until there are three.
#include <chrono>
#include <cstdio>

#include "orch/orch.h"

int main() {
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"drafts": {"type": "array", "reducer": "append"}},
    "nodes": {
      "draft":  {"type": "task"},
      "review": {"type": "task"},
      "check":  {"type": "route", "input": "state.verdict", "routes": {"ok": "__end__", "redo": "draft"}}
    },
    "edges": [["__start__", "draft"], ["draft", "review"], ["review", "check"],
              ["check:redo", "draft"], ["check:ok", "__end__"]]
  })");
  if (!parsed.ok()) return std::fprintf(stderr, "%s\n", parsed.status().to_string().c_str()), 1;

  // The graph, as a Mermaid flowchart (paste it into any Mermaid viewer).
  std::printf("%s\n", orch::workflow_to_mermaid((*parsed)->definition).c_str());

  // The task nodes run C++ functions instead of going to workers.
  auto workflow = orch::bind_functions(*parsed, {
      {"draft", [](const orch::NodeCall& call) -> orch::Result<orch::NodeOutput> {
         size_t n = call.state["drafts"].size() + 1;
         return orch::NodeOutput(orch::Value::object({{"drafts", orch::Value::array({"draft " + std::to_string(n)})}}));
       }},
      {"review", [](const orch::NodeCall& call) -> orch::Result<orch::NodeOutput> {
         return orch::NodeOutput(orch::Value::object({{"verdict", call.state["drafts"].size() >= 3 ? "ok" : "redo"}}));
       }},
  });
  if (!workflow.ok()) return std::fprintf(stderr, "%s\n", workflow.status().to_string().c_str()), 1;

  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  auto engine = orch::Engine::open(options);
  if (!engine.ok()) return std::fprintf(stderr, "%s\n", engine.status().to_string().c_str()), 1;

  auto run = (*engine)->start_run(*workflow, {});
  if (!run.ok()) return std::fprintf(stderr, "%s\n", run.status().to_string().c_str()), 1;
  auto done = (*engine)->wait(*run, std::chrono::seconds(10));
  if (!done.ok()) return std::fprintf(stderr, "%s\n", done.status().to_string().c_str()), 1;
  std::printf("run %s %s\nstate: %s\n", done->id.c_str(), std::string(orch::run_status_name(done->status)).c_str(),
              done->state.to_json().c_str());
  return done->status == orch::RunStatus::kCompleted ? 0 : 1;
}
