// SPDX-License-Identifier: MIT
//
// Engine benchmarks: one JSON line per configuration on stdout.
//   chain   N distinct in-process nodes in a line (items: append, total: add)
//   fanout  a send node over N items to an in-process node, then a join node
//   loop    a two-node loop (agent <-> tool shape) for N steps
//   seq     short runs: a -> b -> c over one `counter` key (last value wins),
//           each node adds 1 (NeoGraph's sequential benchmark)
//   par     short runs: five nodes fanned out from __start__, each appending
//           its index to `results` (append reducer), then a join node that
//           writes `count` (NeoGraph's parallel benchmark)
// seq and par time each of `--runs` runs (after 50 warm-up runs) on one engine
// and store and report the median microseconds per run (us_per_run);
// `--api invoke` (default) runs them with Engine::invoke on this thread,
// `--api start` with start_run + wait.
// Each configuration runs once to warm up, then `--reps` times (default 5),
// reporting median/min/max wall milliseconds, microseconds per node, the bytes
// the store holds for the run's checkpoints, and the process's peak RSS.
// (How stores and engines are kept between repetitions: see run_config.)
//
//   bench_engine [--scenario chain|fanout|loop|all] [--store memory|sqlite|postgres] [--reps N]
//                [--n N] [--durability sync|full] [--runs N] [--api invoke|start] [--node-events on|off]
//                [--pg-notify on|off]
// PostgreSQL: the server ORCH_BENCH_POSTGRES names (a libpq conninfo), else a
// private one started for the benchmark (tests/support/postgres_cluster.h:
// initdb in a temp dir, a Unix socket, fsync on, default settings), removed
// at exit. --pg-notify off turns off the announcements of appended events to
// other instances (LISTEN/NOTIFY; PostgresStoreOptions::announce_events), to
// measure what they cost; the lines then say
// "pg_notify":false.
// With BENCH_EACH=1 in the environment, each repetition's milliseconds also go
// to stderr (to see how a noisy machine spreads them).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "orch/orch.h"
#if __has_include("orch/sqlite_store.h")
#include "orch/sqlite_store.h"
#define ORCH_BENCH_SQLITE 1
#endif
#ifdef ORCH_BENCH_POSTGRES
#include "orch/postgres_store.h"
#include "support/postgres_cluster.h"
#endif

namespace {

using orch::NodeCall;
using orch::NodeOutput;
using orch::Result;
using orch::Value;

struct Config {
  std::string scenario;
  int n = 0;
  std::string store = "memory";
  std::string durability = "sync";
};

// --pg-notify off (PostgreSQL only): the events trigger disabled.
bool g_pg_notify = true;

// seq and par only.
struct ShortRunOptions {
  int runs = 0;            // 0: 2000 in memory, 300 on a database
  std::string api = "invoke";
  bool node_events = true;  // --node-events off: EngineOptions::node_events = false
};

std::shared_ptr<orch::Workflow> chain(int n) {
  std::string nodes, edges = R"(["__start__","n0"])";
  for (int i = 0; i < n; ++i) {
    nodes += (i ? "," : "") + std::string("\"n") + std::to_string(i) + "\":{}";
    if (i > 0) edges += ",[\"n" + std::to_string(i - 1) + "\",\"n" + std::to_string(i) + "\"]";
  }
  edges += ",[\"n" + std::to_string(n - 1) + "\",\"__end__\"]";
  auto parsed = orch::parse_workflow_json(
      R"({"state_schema":{"items":{"type":"array","reducer":"append"},"total":{"type":"number","reducer":"add"}},"nodes":{)" +
      nodes + "},\"edges\":[" + edges + "]}");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  for (auto& node : wf->nodes) {
    std::string name = node.name;
    Value update = Value::object({{"items", Value::array({name})}, {"total", 1}});
    node.function = [update](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(update); };
  }
  wf->reindex();
  return wf;
}

std::shared_ptr<orch::Workflow> fanout() {
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"items": {"type": "array"}, "results": {"type": "array", "reducer": "append"}},
    "nodes": {"fan": {"type": "send", "items_key": "state.items", "target_node": "work", "output_key": "sent"},
              "work": {}, "join": {"type": "transform", "updates": {"joined": true}}},
    "edges": [["__start__","fan"],["fan","join"],["join","__end__"]]})");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  wf->nodes[static_cast<size_t>(wf->node_index("work"))].function = [](const NodeCall& call) -> Result<NodeOutput> {
    return NodeOutput(Value::object({{"results", Value::array({*call.item})}}));
  };
  wf->reindex();
  return wf;
}

std::shared_ptr<orch::Workflow> loop(int n) {
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"log": {"type": "array", "reducer": "append"}, "steps": {"type": "number", "reducer": "add"}},
    "nodes": {"agent": {}, "tool": {},
              "more": {"type": "route", "input": "state.done", "routes": {"true": "__end__", "false": "tool"}, "default": "false"}},
    "edges": [["__start__","agent"],["agent","more"],["more:false","tool"],["tool","agent"],["more:true","__end__"]],
    "recursion_limit": 100000})");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  wf->nodes[static_cast<size_t>(wf->node_index("agent"))].function = [n](const NodeCall& call) -> Result<NodeOutput> {
    int64_t steps = call.state["steps"].get_int(0) + 1;
    return NodeOutput(Value::object({{"log", Value::array({"agent"})}, {"steps", 1}, {"done", steps * 2 >= n}}));
  };
  wf->nodes[static_cast<size_t>(wf->node_index("tool"))].function = [](const NodeCall&) -> Result<NodeOutput> {
    return NodeOutput(Value::object({{"log", Value::array({"tool"})}, {"steps", 1}}));
  };
  wf->reindex();
  return wf;
}

std::shared_ptr<orch::Workflow> seq() {
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"counter": {"type": "number"}},
    "nodes": {"a": {}, "b": {}, "c": {}},
    "edges": [["__start__","a"],["a","b"],["b","c"],["c","__end__"]]})");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  for (auto& node : wf->nodes) {
    node.function = [](const NodeCall& call) -> Result<NodeOutput> {
      return NodeOutput(Value::object({{"counter", call.state["counter"].get_int(0) + 1}}));
    };
  }
  wf->reindex();
  return wf;
}

std::shared_ptr<orch::Workflow> par() {
  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"results": {"type": "array", "reducer": "append"}, "count": {"type": "number"}},
    "nodes": {"p0": {}, "p1": {}, "p2": {}, "p3": {}, "p4": {}, "join": {}},
    "edges": [["__start__","p0"],["__start__","p1"],["__start__","p2"],["__start__","p3"],["__start__","p4"],
              ["p0","join"],["p1","join"],["p2","join"],["p3","join"],["p4","join"],["join","__end__"]]})");
  auto wf = std::make_shared<orch::Workflow>(**parsed);
  for (int i = 0; i < 5; ++i) {
    wf->nodes[static_cast<size_t>(wf->node_index("p" + std::to_string(i)))].function =
        [i](const NodeCall&) -> Result<NodeOutput> { return NodeOutput(Value::object({{"results", Value::array({i})}})); };
  }
  wf->nodes[static_cast<size_t>(wf->node_index("join"))].function = [](const NodeCall& call) -> Result<NodeOutput> {
    return NodeOutput(Value::object({{"count", static_cast<long long>(call.state["results"].size())}}));
  };
  wf->reindex();
  return wf;
}

#ifdef ORCH_BENCH_POSTGRES
// The conninfo of the server the benchmark uses ("" when none could start).
std::string postgres_conninfo() {
  static std::unique_ptr<orch::testing::PostgresCluster> cluster;
  static std::string conninfo = [] {
    if (const char* env = std::getenv("ORCH_BENCH_POSTGRES"); env != nullptr && *env != '\0') return std::string(env);
    orch::testing::PostgresClusterOptions options;
    options.fsync = true;
    auto started = orch::testing::PostgresCluster::start(options);
    if (!started.ok()) {
      std::fprintf(stderr, "bench: no PostgreSQL: %s\n", started.status().to_string().c_str());
      return std::string();
    }
    cluster = std::move(started).value();
    return cluster->conninfo();
  }();
  return conninfo;
}
#endif

// A SQLite database file and its write-ahead log and index.
void remove_db(const std::string& path) {
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ignored);
}

std::shared_ptr<orch::Store> open_store(const Config& c, const std::string& path) {
  if (c.store == "memory") return orch::new_memory_store();
#ifdef ORCH_BENCH_POSTGRES
  if (c.store == "postgres") {
    // A fresh schema per repetition: a run on an empty database, as with SQLite.
    static int counter = 0;
    orch::PostgresStoreOptions options;
    options.schema = "bench_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    options.announce_events = g_pg_notify;
    const std::string conninfo = postgres_conninfo();
    if (conninfo.empty()) return nullptr;
    auto s = orch::new_postgres_store(conninfo, options);
    if (!s.ok()) {
      std::fprintf(stderr, "bench: %s\n", s.status().to_string().c_str());
      return nullptr;
    }
    return *s;
  }
#endif
  if (c.store != "sqlite") return nullptr;
#ifdef ORCH_BENCH_SQLITE
  remove_db(path);
  auto s = orch::open_sqlite_store(path);
  if (s.ok()) return *s;
#endif
  (void)path;
  return nullptr;
}

int64_t checkpoint_bytes(orch::Store& store, const std::string& run_id, const std::string& path, const Config& c) {
#ifdef ORCH_BENCH_POSTGRES
  if (c.store == "postgres") {
    auto bytes = orch::postgres_checkpoint_bytes(store, run_id);
    if (bytes.ok()) return *bytes;
  }
#endif
#ifdef ORCH_BENCH_SQLITE
  if (c.store == "sqlite") {
    auto bytes = orch::sqlite_checkpoint_bytes(store, run_id);
    if (bytes.ok()) return *bytes;
  }
#endif
  (void)path;
  (void)c;
  // Memory store: the JSON size of every checkpoint's state (what a naive store writes).
  int64_t total = 0;
  auto cps = store.list_checkpoints(run_id);
  if (cps.ok()) {
    for (const auto& cp : *cps) total += static_cast<int64_t>(cp.state.to_json().size());
  }
  return total;
}

long peak_rss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

void run_config(const Config& c, int reps) {
  std::shared_ptr<orch::Workflow> wf;
  Value input = Value::object();
  int64_t nodes = c.n;
  if (c.scenario == "chain") {
    wf = chain(c.n);
  } else if (c.scenario == "fanout") {
    wf = fanout();
    Value items = Value::array();
    for (int i = 0; i < c.n; ++i) items.push_back(i);
    input.set("items", items);
    nodes = c.n + 2;
  } else {
    wf = loop(c.n);
  }
  // Per process: two benchmarks at once must not share (and delete) a file.
  std::string path = "/tmp/orch-bench-" + c.scenario + "-" + std::to_string(::getpid()) + ".db";
  std::vector<double> ms;
  int64_t bytes = 0;
  // Memory store: one store and engine for the configuration, as a host keeps
  // them (the warm-up run compiles the workflow, which the engine keeps), and
  // each run is deleted once measured, or the store would hold them all.
  // SQLite: each repetition opens a fresh database file (and engine): a run
  // on an empty database. (A file holding the earlier repetitions' runs
  // measured chain 1000 at 82-130 ms instead of 85-90: background WAL
  // checkpoints of a bigger file.)
  std::shared_ptr<orch::Store> store;
  std::unique_ptr<orch::Engine> engine;
  for (int rep = 0; rep <= reps; ++rep) {
    if (!engine || c.store != "memory") {
      engine.reset();
      store.reset();
      store = open_store(c, path);
      if (!store) {
        std::printf("{\"scenario\":\"%s\",\"store\":\"%s\",\"skipped\":\"store not available\"}\n", c.scenario.c_str(), c.store.c_str());
        return;
      }
      orch::EngineOptions options;
      options.store = store;
      options.threads = std::getenv("BENCH_THREADS") ? std::atoi(std::getenv("BENCH_THREADS")) : 2;
      options.durability = c.durability == "full" ? orch::Durability::kFull
                           : c.durability == "exit" ? orch::Durability::kExit
                                                    : orch::Durability::kSync;
      auto opened = orch::Engine::open(options);
      if (!opened.ok()) {
        std::printf("{\"scenario\":\"%s\",\"error\":%s}\n", c.scenario.c_str(), Value(opened.status().message()).to_json().c_str());
        return;
      }
      engine = std::move(opened).value();
    }
    orch::RunOptions run;
    run.input = input;
    auto start = std::chrono::steady_clock::now();
    auto id = engine->start_run(wf, run);
    auto done = id.ok() ? engine->wait(*id, std::chrono::minutes(10)) : orch::Result<orch::RunRecord>(id.status());
    double elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!done.ok() || done->status != orch::RunStatus::kCompleted) {
      std::printf("{\"scenario\":\"%s\",\"n\":%d,\"error\":\"run did not complete\"}\n", c.scenario.c_str(), c.n);
      return;
    }
    if (rep > 0) ms.push_back(elapsed);  // rep 0 is the warm-up
    if (std::getenv("BENCH_EACH") != nullptr) std::fprintf(stderr, "%.2f ", elapsed);
    if (rep == reps) bytes = checkpoint_bytes(*store, *id, path, c);  // once: it is not part of the timing
    if (c.store == "memory") (void)engine->delete_run(*id);
  }
  engine.reset();
  store.reset();
  if (c.store == "sqlite") remove_db(path);  // nothing left in /tmp
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  std::printf(
      "{\"scenario\":\"%s\",\"n\":%d,\"store\":\"%s\",\"durability\":\"%s\",\"reps\":%d,\"median_ms\":%.3f,"
      "\"min_ms\":%.3f,\"max_ms\":%.3f,\"us_per_node\":%.3f,\"checkpoint_bytes\":%lld,\"peak_rss_kb\":%ld%s}\n",
      c.scenario.c_str(), c.n, c.store.c_str(), c.durability.c_str(), reps, median, ms.front(), ms.back(),
      median * 1000.0 / static_cast<double>(nodes), static_cast<long long>(bytes), peak_rss_kb(),
      c.store == "postgres" && !g_pg_notify ? ",\"pg_notify\":false" : "");
  std::fflush(stdout);
}

// seq / par: many short runs on one engine and store, each timed alone.
void run_short(const Config& c, const ShortRunOptions& o) {
  std::shared_ptr<orch::Workflow> wf = c.scenario == "seq" ? seq() : par();
  const int runs = o.runs > 0 ? o.runs : (c.store == "memory" ? 2000 : 300);
  constexpr int kWarmup = 50;
  std::string path = "/tmp/orch-bench-" + c.scenario + "-" + std::to_string(::getpid()) + ".db";
  std::shared_ptr<orch::Store> store = open_store(c, path);
  if (!store) {
    std::printf("{\"scenario\":\"%s\",\"store\":\"%s\",\"skipped\":\"store not available\"}\n", c.scenario.c_str(), c.store.c_str());
    return;
  }
  orch::EngineOptions options;
  options.store = store;
  options.threads = std::getenv("BENCH_THREADS") ? std::atoi(std::getenv("BENCH_THREADS")) : 2;
  options.node_events = o.node_events;
  auto opened = orch::Engine::open(options);
  if (!opened.ok()) {
    std::printf("{\"scenario\":\"%s\",\"error\":%s}\n", c.scenario.c_str(), Value(opened.status().message()).to_json().c_str());
    return;
  }
  std::unique_ptr<orch::Engine> engine = std::move(opened).value();
  std::vector<double> us;
  us.reserve(static_cast<size_t>(runs));
  for (int i = 0; i < kWarmup + runs; ++i) {
    auto start = std::chrono::steady_clock::now();
    orch::Result<orch::RunRecord> done = orch::Status::internal("not run");
    std::string id;
    if (o.api == "invoke") {
      done = engine->invoke(wf, orch::RunOptions());
      if (done.ok()) id = done->id;
    } else {
      auto started = engine->start_run(wf, orch::RunOptions());
      if (started.ok()) {
        id = *started;
        done = engine->wait(id, std::chrono::minutes(1));
      } else {
        done = started.status();
      }
    }
    double elapsed = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (!done.ok() || done->status != orch::RunStatus::kCompleted) {
      std::printf("{\"scenario\":\"%s\",\"store\":\"%s\",\"error\":\"run did not complete\"}\n", c.scenario.c_str(), c.store.c_str());
      return;
    }
    if (i == 0) {
      // The workload as described: seq counts to 3, par collects 5 results.
      const Value& state = done->state;
      bool right = c.scenario == "seq" ? state["counter"].get_int(0) == 3
                                       : state["results"].size() == 5 && state["count"].get_int(0) == 5;
      if (!right) {
        std::printf("{\"scenario\":\"%s\",\"error\":\"wrong final state\",\"state\":%s}\n", c.scenario.c_str(), state.to_json().c_str());
        return;
      }
    }
    if (i >= kWarmup) us.push_back(elapsed);
    if (c.store == "memory") (void)engine->delete_run(id);
  }
  engine.reset();
  store.reset();
  if (c.store == "sqlite") remove_db(path);
  std::sort(us.begin(), us.end());
  std::printf(
      "{\"scenario\":\"%s\",\"store\":\"%s\",\"api\":\"%s\",\"node_events\":%s,\"runs\":%d,\"us_per_run\":%.2f,\"p10_us\":%.2f,"
      "\"p90_us\":%.2f,\"peak_rss_kb\":%ld}\n",
      c.scenario.c_str(), c.store.c_str(), o.api.c_str(), o.node_events ? "true" : "false", runs, us[us.size() / 2], us[us.size() / 10],
      us[us.size() * 9 / 10], peak_rss_kb());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string scenario = "all";
  std::string store = "all";
  int reps = 5;
  int only_n = 0;
  std::string only_durability;
  ShortRunOptions short_runs;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--scenario") scenario = argv[i + 1];
    else if (flag == "--store") store = argv[i + 1];
    else if (flag == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--n") only_n = std::atoi(argv[i + 1]);
    else if (flag == "--durability") only_durability = argv[i + 1];
    else if (flag == "--runs") short_runs.runs = std::atoi(argv[i + 1]);
    else if (flag == "--api") short_runs.api = argv[i + 1];
    else if (flag == "--node-events") short_runs.node_events = std::string(argv[i + 1]) != "off";
    else if (flag == "--pg-notify") g_pg_notify = std::string(argv[i + 1]) != "off";
  }
  std::vector<Config> configs;
  for (int n : {10, 100, 1000}) {
    configs.push_back({"chain", n, "memory", "sync"});
    configs.push_back({"chain", n, "sqlite", "sync"});
    configs.push_back({"chain", n, "sqlite", "full"});
    configs.push_back({"chain", n, "postgres", "sync"});
  }
  configs.push_back({"chain", 1000, "postgres", "full"});
  for (int n : {100, 1000, 10000}) configs.push_back({"fanout", n, "memory", "sync"});
  configs.push_back({"loop", 1000, "memory", "sync"});
  configs.push_back({"loop", 1000, "sqlite", "sync"});
  configs.push_back({"loop", 1000, "postgres", "sync"});
  for (const char* name : {"seq", "par"}) {
    for (const char* st : {"memory", "sqlite"}) configs.push_back({name, 0, st, "sync"});
  }
  for (const Config& c : configs) {
    if (scenario != "all" && c.scenario != scenario) continue;
    if (store != "all" && c.store != store) continue;
    if (only_n != 0 && c.n != only_n) continue;
    if (!only_durability.empty() && c.durability != only_durability) continue;
    if (c.scenario == "seq" || c.scenario == "par") {
      run_short(c, short_runs);
      continue;
    }
    run_config(c, reps);
  }
  return 0;
}
