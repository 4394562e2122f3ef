// SPDX-License-Identifier: MIT
//
// The process the crash test kills. It runs 50 workflows against a SQLite file
// or, for a postgres:// / postgresql:// URI, a PostgreSQL database (creating
// them on first start, recovering them on later starts) and appends
// to a side-effect log:
//   E <run> <node> <superstep>   a node function ran
//   R <run> <node> <superstep>   the store recorded that node's result
// so the test can tell whether a node ran again after its result was recorded.
//   crash_child DB LOG
//
// With --crash-loop it runs two workflows instead, "good" and "bad", whose
// node crashes the process (SIGSEGV) each time it runs; crash attribution
// (EngineOptions::crash_log_path) must fail "bad" after max_recoveries
// restarts while "good" completes.
//   crash_child DB LOG --crash-loop
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "orch/orch.h"
#include "orch/postgres_store.h"
#include "orch/sqlite_store.h"

namespace {

int g_log = -1;

void log_line(const std::string& line) {
  std::string l = line + "\n";
  (void)!write(g_log, l.data(), l.size());  // O_APPEND: whole lines, in order
}

// Logs every node result the store makes durable.
class RecordingStore : public orch::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  orch::Status put_pending_write(const orch::PendingWrite& w) override {
    orch::Status s = StoreWrapper::put_pending_write(w);
    if (s.ok()) log_line("R " + w.run_id + " " + w.node_name + " " + std::to_string(w.superstep));
    return s;
  }
  orch::Status commit_checkpoint(const orch::Checkpoint& cp, const orch::RunRecord& run, bool sync) override {
    orch::Status s = StoreWrapper::commit_checkpoint(cp, run, sync);
    if (s.ok()) {
      for (const std::string& node : cp.completed_nodes) {
        log_line("R " + run.id + " " + node + " " + std::to_string(cp.version));
      }
    }
    return s;
  }
};

orch::Result<std::shared_ptr<orch::Store>> open_store(const std::string& db) {
  if (orch::is_postgres_uri(db)) return orch::new_postgres_store(db);
  return orch::open_sqlite_store(db);
}

int crash_loop(const std::string& db) {
  auto store = orch::open_sqlite_store(db);
  if (!store.ok()) return 1;
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"trace": {"type": "array", "reducer": "append"}},
    "nodes": {"a": {}, "b": {}}, "edges": [["__start__","a"],["a","b"],["b","__end__"]]})");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  for (auto& node : wf->nodes) {
    std::string name = node.name;
    node.function = [name](const orch::NodeCall& call) -> orch::Result<orch::NodeOutput> {
      if (name == "b" && std::string(call.run_id) == "bad") raise(SIGSEGV);
      return orch::NodeOutput(orch::Value::object({{"trace", orch::Value::array({name})}}));
    };
  }
  wf->reindex();
  orch::EngineOptions options;
  options.store = *store;
  options.owner_id = "crash-loop-child";
  options.crash_log_path = db + ".crashes";
  options.max_recoveries = 3;
  options.workflow_resolver = [wf](const std::string&) -> orch::Result<std::shared_ptr<const orch::Workflow>> {
    return std::shared_ptr<const orch::Workflow>(wf);
  };
  auto engine = orch::Engine::open(options);
  if (!engine.ok()) return 1;
  (void)(*engine)->recover();
  for (const char* id : {"good", "bad"}) {
    orch::RunOptions run;
    run.run_id = id;
    run.workflow_id = "loop";
    (void)(*engine)->start_run(wf, run);  // AlreadyExists after the first start
  }
  for (const char* id : {"good", "bad"}) {
    if (!(*engine)->wait(id, std::chrono::seconds(30)).ok()) return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[3]) == "--crash-loop") return crash_loop(argv[1]);
  if (argc < 3) return 2;
  g_log = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
  auto opened = open_store(argv[1]);
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().to_string().c_str());
    return 1;
  }
  auto store = std::make_shared<RecordingStore>(*opened);
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"trace": {"type": "array", "reducer": "append"}, "count": {"type": "number", "reducer": "add"}},
    "nodes": {"a": {}, "b1": {}, "b2": {}, "join": {}, "c": {}},
    "edges": [["__start__","a"],["a","b1"],["a","b2"],["b1","join"],["b2","join"],["join","c"],["c","__end__"]]})");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  for (auto& node : wf->nodes) {
    std::string name = node.name;
    node.function = [name](const orch::NodeCall& call) -> orch::Result<orch::NodeOutput> {
      thread_local std::mt19937 rng{std::random_device{}()};
      int64_t superstep = call.state["__meta"]["step"].get_int(0) + 1;  // the checkpoint version it closes
      log_line("E " + std::string(call.run_id) + " " + name + " " + std::to_string(superstep));
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
      return orch::NodeOutput(orch::Value::object({{"trace", orch::Value::array({name})}, {"count", 1}}));
    };
  }
  wf->reindex();

  orch::EngineOptions options;
  options.store = store;
  options.threads = 2;
  options.owner_id = "crash-child";  // stable: a restart takes its runs back at once
  // Runs are recovered by id, and their workflow comes from here (it has C++ functions).
  options.workflow_resolver = [wf](const std::string&) -> orch::Result<std::shared_ptr<const orch::Workflow>> {
    return std::shared_ptr<const orch::Workflow>(wf);
  };
  auto engine = orch::Engine::open(options);
  if (!engine.ok()) return 1;
  // Later starts: continue what was running; first start: create the runs.
  (void)(*engine)->recover();
  for (int i = 0; i < 50; ++i) {
    orch::RunOptions run;
    run.run_id = "run-" + std::to_string(i);
    run.workflow_id = "crash";
    (void)(*engine)->start_run(wf, run);  // AlreadyExists after the first start
  }
  for (int i = 0; i < 50; ++i) {
    auto r = (*engine)->wait("run-" + std::to_string(i), std::chrono::seconds(60));
    if (!r.ok()) return 3;
  }
  std::printf("done\n");
  return 0;
}
