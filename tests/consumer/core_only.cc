// A host program that links orch::core alone: a graph of C++ function nodes
// over the in-memory store. check.cmake then reads its dynamic dependencies:
// no broker, HTTP, SQLite, PostgreSQL or Graphviz library may be among them.
#include <chrono>
#include <cstdio>
#include <orch/engine.h>
#include <orch/workflow.h>

int main() {
  auto parsed = orch::parse_workflow_json(R"({
    "nodes": {"double": {"type": "task"}},
    "edges": [["__start__", "double"], ["double", "__end__"]]})");
  if (!parsed.ok()) return std::fprintf(stderr, "%s\n", parsed.status().to_string().c_str()), 1;
  auto workflow = orch::bind_functions(*parsed, {{"double", [](const orch::NodeCall& call) -> orch::Result<orch::NodeOutput> {
    return orch::NodeOutput(orch::Value::object({{"n", call.state["n"].get_int(0) * 2}}));
  }}});
  if (!workflow.ok()) return 1;
  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  auto engine = orch::Engine::open(options);
  if (!engine.ok()) return 1;
  orch::RunOptions run_options;
  run_options.input = orch::Value::object({{"n", 21}});
  auto run = (*engine)->start_run(*workflow, run_options);
  if (!run.ok()) return 1;
  auto done = (*engine)->wait(*run, std::chrono::seconds(10));
  if (!done.ok()) return 1;
  std::printf("core only: %s %s\n", std::string(orch::run_status_name(done->status)).c_str(),
              done->state.to_json().c_str());
  return done->status == orch::RunStatus::kCompleted && done->state["n"].get_int(0) == 42 ? 0 : 1;
}
