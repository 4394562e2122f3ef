// SPDX-License-Identifier: MIT
//
// Server benchmark: `orch serve` (a child process, real HTTP) with its store,
// a webhook worker on loopback answering at once (loopback_worker.h: one
// event-loop thread, so it takes little of the CPU orch needs), and R runs of
// a 10-node workflow in flight at all times: when a run's last node is
// answered, the next run starts. Measures node executions per second over a
// window, orch's CPU time per node (user + system, from /proc), and the
// latency orch adds per node beyond the worker's own time (p50/p99),
// measured in the worker as the gap between answering node i and receiving
// node i+1 of the same run.
//
// With --worker-ms the worker takes that long per call, as a model would: the
// added latency is then not dominated by runs queueing for the CPU (with R
// runs in flight and an instant worker, Little's law makes each node wait
// about R / throughput), and R / worker time bounds the throughput.
//
// A warm-up (R runs, until all end) and a second of load come before the
// measured window of --seconds (default 3); then no new run starts and every
// started run must complete. This repeats --reps times (default 3), each with
// a fresh database and server; the one JSON line printed holds the medians
// (and the min/max of the rate and the p50).
//
// With a SQLite file (the default: a fresh file in a private temporary
// directory per repetition) it also reports what the load left on disk: the
// database's size (page_count * page_size) per run stored, and the
// write-ahead log's size, sampled every few milliseconds from the warm-up to
// the end of the load (peak) and once all runs have ended (end).
//
// With --workflow hello the runs are those of examples/workflows/hello (6
// transform nodes, no worker calls, a 3-key state): --runs clients (at most
// 16) each start a run and poll it until it ends, for the window; the rate
// counts the nodes of the runs that ended in it. No latency is measured.
//
// PostgreSQL (issue #21): --db postgres starts a private server for the
// benchmark (tests/support/postgres_cluster.h: initdb in a temp dir, a Unix
// socket, fsync on, removed at exit); --db postgres://... (or postgresql://)
// names one. Each repetition uses a fresh schema (dropped afterwards), and
// --instances N starts N orch serve processes on it, each with its own state
// dir and port: the runs are started round-robin across them (a run executes
// on the instance that started it), the rate and the latencies are over all
// of them, and orch's CPU per node is the sum over all instances. With the
// private server, the CPU its processes used in the window is reported per
// node too (postgres_cpu_us_per_node). --pg-notify sets the announcements of
// appended events (LISTEN/NOTIFY; config postgres.announce_events): followed
// (orch serve's default: only runs an event stream follows, none here), all
// (every write of every run, delivered to every instance) or off, to measure
// what they cost; with off other instances no longer hear of those events
// (their SSE streams would lag), which the runs themselves do not need.
//
// --pg-connections N sets each instance's pool size (postgres.max_connections;
// default orch's: twice the cores, 2 to 8), --pg-writers N its group writers
// (postgres.group_commit_writers; default orch's, half the pool).
//
//   bench_server ORCH_BINARY [--runs 100] [--db PATH|:memory:|postgres|postgres://...] [--instances 1]
//                [--worker-ms 0] [--seconds 3] [--reps 3] [--workflow bench|hello] [--pg-notify followed|all|off]
//                [--pg-connections N]
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/http_api.h"
#include "loopback_worker.h"
#include "orch/value.h"

#ifdef ORCH_BENCH_POSTGRES
#include "postgres_sql.h"
#include "support/postgres_cluster.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kNodesPerRun = 10;

struct Timeline {
  std::mutex mu;
  // run id -> (arrival, reply) times of its worker calls, in order.
  std::map<std::string, std::vector<std::pair<Clock::time_point, Clock::time_point>>> calls;
  int answered = 0;
  std::condition_variable all_answered;
  // Under load: a run whose last node was answered asks for the next run.
  bool steady = false;
  int to_start = 0;    // runs the starters owe
  int finished = 0;    // runs whose last node was answered
  std::condition_variable start_wanted;
};

// A process's /proc/<pid>/stat fields from the state on (the command name
// before them may hold spaces): [0] state, [1] ppid, [11] utime, [12] stime,
// [13] cutime, [14] cstime. Empty when the process is gone.
std::vector<std::string> stat_fields_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t at = text.rfind(')');
  if (at == std::string::npos) return {};
  std::istringstream in(text.substr(at + 2));
  std::vector<std::string> fields;
  for (std::string f; fields.size() < 15 && in >> f;) fields.push_back(f);
  return fields;
}

double ticks_to_us(double ticks) { return ticks * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK)); }

// CPU time (user + system) the process has used so far, in microseconds.
double cpu_us_of(pid_t pid) {
  const std::vector<std::string> f = stat_fields_of(pid);
  if (f.size() < 13) return 0;
  return ticks_to_us(std::atof(f[11].c_str()) + std::atof(f[12].c_str()));
}

// CPU time of a process, of the children it has reaped, and of its live
// children: a PostgreSQL server's postmaster and its backends (a backend
// that ended in between counts through its parent's cutime/cstime).
double cpu_us_of_tree(pid_t root) {
  const std::vector<std::string> f = stat_fields_of(root);
  if (f.size() < 15) return 0;
  double us = ticks_to_us(std::atof(f[11].c_str()) + std::atof(f[12].c_str()) + std::atof(f[13].c_str()) +
                          std::atof(f[14].c_str()));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::atoi(name.c_str());
    const std::vector<std::string> child = stat_fields_of(pid);
    if (child.size() >= 2 && std::atoi(child[1].c_str()) == root) us += cpu_us_of(pid);
  }
  return us;
}

// A free loopback port: bind to port 0, read the port back, close.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

struct Options {
  std::string orch_bin;
  int runs = 100;
  int worker_ms = 0;
  double seconds = 3;
  int reps = 3;
  std::string db;  // empty: a fresh file in a private temporary directory
  bool hello = false;  // --workflow hello
  int instances = 1;   // orch serve processes on one PostgreSQL database
  std::string pg_notify = "followed";  // --pg-notify: followed, all or off
  int pg_connections = 0;  // --pg-connections: each instance's pool size (0: orch's default)
  int pg_writers = 0;      // --pg-writers: each instance's group writers (0: orch's default)
};

bool is_postgres(const Options& options) {
  return options.db == "postgres" || options.db.rfind("postgres://", 0) == 0 ||
         options.db.rfind("postgresql://", 0) == 0;
}

const char* store_name(const Options& options) {
  return is_postgres(options) ? "postgres" : options.db == ":memory:" ? "memory" : "sqlite";
}

// The PostgreSQL server the runs go to: its URI (for orch serve and libpq)
// and, for the private one, its postmaster's pid (for its CPU time).
struct PostgresTarget {
  std::string uri;
  pid_t postmaster = 0;
  std::string error;
};

#ifdef ORCH_BENCH_POSTGRES
const PostgresTarget& postgres_target(const Options& options) {
  static std::unique_ptr<orch::testing::PostgresCluster> cluster;
  static const PostgresTarget target = [&] {
    PostgresTarget t;
    if (options.db != "postgres") {
      t.uri = options.db;
      return t;
    }
    orch::testing::PostgresClusterOptions cluster_options;
    cluster_options.fsync = true;
    // $ORCH_BENCH_PG_SETTINGS: more server settings, ';'-separated (e.g.
    // "log_min_duration_statement=20;logging_collector=on;log_directory=/tmp/pglog").
    if (const char* extra = std::getenv("ORCH_BENCH_PG_SETTINGS")) {
      std::string list = extra;
      for (size_t start = 0; start < list.size();) {
        size_t end = list.find(';', start);
        if (end == std::string::npos) end = list.size();
        if (end > start) cluster_options.settings.push_back(list.substr(start, end - start));
        start = end + 1;
      }
    }
    auto started = orch::testing::PostgresCluster::start(cluster_options);
    if (!started.ok()) {
      t.error = "no PostgreSQL: " + started.status().to_string();
      return t;
    }
    cluster = std::move(started).value();
    t.uri = cluster->uri();
    std::ifstream pid_file(cluster->socket_dir() + "/data/postmaster.pid");
    int pid = 0;
    if (pid_file >> pid) t.postmaster = pid;
    return t;
  }();
  return target;
}

std::string exec_sql(const std::string& uri, const std::string& sql) {
  return orch::bench::exec_postgres_sql(uri, sql);
}
#else
const PostgresTarget& postgres_target(const Options&) {
  static const PostgresTarget target{"", 0, "this build has no PostgreSQL store"};
  return target;
}
std::string exec_sql(const std::string&, const std::string&) { return "this build has no PostgreSQL store"; }
#endif

// examples/workflows/hello.json, whose runs execute 6 nodes.
constexpr const char* kHelloWorkflow = R"json({"id": "hello", "name": "Hello (no workers needed)",
  "state_schema": {"greeting": {"type": "string"}, "log": {"type": "array", "reducer": "append"},
                   "count": {"type": "number", "reducer": "add"}},
  "nodes": {
    "greet": {"type": "transform", "updates": {"greeting": "hello", "log": ["greet"], "count": 1}},
    "again": {"type": "transform", "updates": {"log": ["again"], "count": 1}},
    "enough": {"type": "route", "input": "state.count", "routes": {"3": "__end__", "more": "again"},
               "default": "more"}},
  "edges": [["__start__", "greet"], ["greet", "enough"], ["enough:more", "again"], ["again", "enough"],
            ["enough:3", "__end__"]]})json";
constexpr int kHelloNodesPerRun = 6;

// One repetition's figures.
struct Measurement {
  bool started = false;  // orch serve came up
  int runs_started = 0, runs_left_running = 0, runs_failed = 0;
  double executions_per_s = 0, cpu_us_per_node = 0, p50_ms = 0, p99_ms = 0;
  // On disk (SQLite files only): database bytes per stored run, the log's
  // peak and final size.
  double db_bytes_per_run = 0, wal_peak_bytes = 0, wal_end_bytes = 0;
  // The private PostgreSQL server's CPU time per node in the window.
  double postgres_cpu_us_per_node = 0;
  std::string first_failure;
  std::string error;  // why the repetition could not run
};

int64_t file_size(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// page_count * page_size of the database at `path` (its log included, as a
// reader sees it) divided by the runs it holds; 0 when it cannot be read.
double stored_bytes_per_run(const std::string& path) {
  sqlite3* db = nullptr;
  double out = 0;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    auto one = [&](const char* sql) {
      sqlite3_stmt* stmt = nullptr;
      int64_t v = 0;
      if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
      sqlite3_finalize(stmt);
      return v;
    };
    const int64_t bytes = one("PRAGMA page_count") * one("PRAGMA page_size");
    const int64_t runs = one("SELECT count(*) FROM runs");
    if (runs > 0) out = static_cast<double>(bytes) / static_cast<double>(runs);
  }
  sqlite3_close(db);
  return out;
}

// Samples the size of a file on its own thread until destroyed; keeps the peak.
class SizeSampler {
 public:
  explicit SizeSampler(std::string path) : path_(std::move(path)), thread_([this] { run(); }) {}
  ~SizeSampler() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::max(peak_, file_size(path_));
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      peak_ = std::max(peak_, file_size(path_));
      wake_.wait_for(lock, std::chrono::milliseconds(5));
    }
  }
  const std::string path_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  int64_t peak_ = 0;
  std::thread thread_;
};

// A fresh database and `orch serve` (one per instance), warm-up, load,
// measured window.
Measurement measure_once(const Options& options, int rep) {
  const std::string& orch_bin = options.orch_bin;
  const int runs = options.runs;
  const int worker_ms = options.worker_ms;
  const double seconds = options.seconds;
  const int instances = options.instances;
  Measurement out;
  // A private directory per repetition for the config and the instances'
  // state (and the database unless one was named): nothing is shared with
  // another bench's files.
  char dir_template[] = "/tmp/orch-bench-server-XXXXXX";
  const char* made = mkdtemp(dir_template);
  if (made == nullptr) {
    out.error = "mkdtemp failed";
    return out;
  }
  const std::string dir = made;
  auto remove_dir = [&] {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  };
  const bool postgres = is_postgres(options);
  std::string db = options.db.empty() ? dir + "/orch.db" : options.db;
  // PostgreSQL: a fresh schema per repetition, dropped at the end.
  std::string schema;
  pid_t postmaster = 0;
  if (postgres) {
    const PostgresTarget& target = postgres_target(options);
    if (!target.error.empty()) {
      out.error = target.error;
      remove_dir();
      return out;
    }
    db = target.uri;
    postmaster = target.postmaster;
    schema = "bench_server_" + std::to_string(::getpid()) + "_" + std::to_string(rep);
  }
  const bool on_disk = !postgres && db != ":memory:";
  if (on_disk) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  }

  // The worker: records when each call of each run arrives and is answered.
  Timeline timeline;
  orch::bench::LoopbackWorker worker(
      std::chrono::milliseconds(worker_ms),
      [&](const std::string& body, Clock::time_point arrived, Clock::time_point answered) {
        // The run id is in the session key "run_<run>_step_<step>"; found
        // without parsing the whole body.
        static const std::string kSessionKey = "\"session_id\":\"";
        size_t at = body.find(kSessionKey);
        std::string session;
        if (at != std::string::npos) {
          at += kSessionKey.size();
          session = body.substr(at, body.find('"', at) - at);
        }
        std::string run = session.substr(0, session.find("_step_"));
        std::lock_guard<std::mutex> lock(timeline.mu);
        auto& calls = timeline.calls[run];
        calls.emplace_back(arrived, answered);
        ++timeline.answered;
        if (calls.size() == kNodesPerRun) {
          ++timeline.finished;
          if (timeline.steady) {
            ++timeline.to_start;
            timeline.start_wanted.notify_one();
          }
        }
        timeline.all_answered.notify_all();
      });
  const int worker_port = worker.port();

  // orch serve, configured with that worker: one process per instance, each
  // with its own port and state dir.
  std::string config_path = dir + "/config.json";
  {
    std::ofstream config(config_path);
    config << R"({"workers": [{"id": "w", "url": "http://127.0.0.1:)" << worker_port
           << R"(/webhook", "token": "", "max_concurrent": 1000}], "http": {"threads": 64})";
    if (postgres) {
      config << R"(, "postgres": {"schema": ")" << schema << '"';
      if (options.pg_connections > 0) config << R"(, "max_connections": )" << options.pg_connections;
      if (options.pg_writers > 0) config << R"(, "group_commit_writers": )" << options.pg_writers;
      if (options.pg_notify == "off") config << R"(, "announce_events": false)";
      if (options.pg_notify == "all") config << R"(, "announce_events": true)";
      config << "}";
    }
    config << "}";
  }
  std::vector<pid_t> children;
  std::vector<int> ports;
  for (int i = 0; i < instances; ++i) {
    const int port = free_port();
    const std::string state_dir = dir + "/instance-" + std::to_string(i);
    pid_t child = fork();
    if (child == 0) {
      // Its log stays out of the bench's JSON line (and costs no terminal time).
      const int null_fd = ::open("/dev/null", O_WRONLY);
      if (null_fd >= 0) {
        dup2(null_fd, STDOUT_FILENO);
        dup2(null_fd, STDERR_FILENO);
      }
      std::string port_arg = std::to_string(port);
      if (postgres) {
        execl(orch_bin.c_str(), orch_bin.c_str(), "serve", "--port", port_arg.c_str(), "--db", db.c_str(),
              "--state-dir", state_dir.c_str(), "--config", config_path.c_str(), static_cast<char*>(nullptr));
      } else {
        execl(orch_bin.c_str(), orch_bin.c_str(), "serve", "--port", port_arg.c_str(), "--db", db.c_str(), "--config",
              config_path.c_str(), static_cast<char*>(nullptr));
      }
      _exit(127);
    }
    children.push_back(child);
    ports.push_back(port);
  }
  auto stop_children = [&] {
    for (pid_t child : children) kill(child, SIGTERM);
    for (pid_t child : children) waitpid(child, nullptr, 0);
    if (postgres) (void)exec_sql(db, "DROP SCHEMA IF EXISTS \"" + schema + "\" CASCADE");
  };
  bool up = true;
  for (size_t k = 0; k < ports.size() && up; ++k) {
    httplib::Client probe("127.0.0.1", ports[k]);
    bool this_up = false;
    for (int i = 0; i < 1000 && !this_up; ++i) {
      auto r = probe.Get("/health");
      this_up = r && r->status == 200;
      if (this_up) break;
      // An instance that exited (a database it cannot open) will not come up.
      int status = 0;
      if (waitpid(children[k], &status, WNOHANG) == children[k]) {
        children[k] = -1;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        out.error = "orch serve exited at startup (exit code " + std::to_string(code) + ")";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    up = up && this_up;
  }
  if (!up || !out.error.empty()) {
    if (out.error.empty()) out.error = "orch serve did not start";
    for (pid_t child : children) {
      if (child > 0) kill(child, SIGKILL);
    }
    for (pid_t child : children) {
      if (child > 0) waitpid(child, nullptr, 0);
    }
    if (postgres) (void)exec_sql(db, "DROP SCHEMA IF EXISTS \"" + schema + "\" CASCADE");
    remove_dir();
    return out;
  }
  out.started = true;
  // Control requests (the workflow, the run lists) go to the first instance:
  // every instance reads the same database.
  const int port = ports.front();
  httplib::Client api("127.0.0.1", port);
  api.set_tcp_nodelay(true);
  auto orch_cpu_us = [&] {
    double us = 0;
    for (pid_t child : children) us += cpu_us_of(child);
    return us;
  };
  auto postgres_cpu_us = [&] { return postmaster > 0 ? cpu_us_of_tree(postmaster) : 0.0; };
  // Round-robin over the instances: each client holds one connection to each.
  std::atomic<unsigned> next_instance{0};
  auto clients_for_all = [&] {
    std::vector<std::unique_ptr<httplib::Client>> clients;
    for (int p : ports) {
      clients.push_back(std::make_unique<httplib::Client>("127.0.0.1", p));
      clients.back()->set_tcp_nodelay(true);
    }
    return clients;
  };
  std::optional<SizeSampler> wal_sampler;
  if (on_disk) wal_sampler.emplace(db + "-wal");
  auto finish = [&] {
    if (on_disk) {
      out.wal_peak_bytes = static_cast<double>(wal_sampler->peak());
      wal_sampler.reset();
      out.wal_end_bytes = static_cast<double>(file_size(db + "-wal"));
      out.db_bytes_per_run = stored_bytes_per_run(db);
    }
    stop_children();
    remove_dir();
  };
  if (options.hello) {
    api.Post("/workflows", kHelloWorkflow, "application/json");
    // Each client: start a run, poll it until it ends, again; until `stop`.
    std::atomic<bool> stop{false}, measuring{false};
    std::atomic<int64_t> ended_in_window{0}, failed{0}, started{0};
    // Client t talks to instance t % N.
    auto client = [&](int instance) {
      httplib::Client c("127.0.0.1", ports[static_cast<size_t>(instance) % ports.size()]);
      c.set_tcp_nodelay(true);
      while (!stop) {
        auto r = c.Post("/workflows/hello/run", "{}", "application/json");
        auto v = r && r->status / 100 == 2 ? orch::parse_json(r->body) : orch::Result<orch::Value>(orch::Status::internal("start failed"));
        if (!v.ok()) {
          ++failed;
          continue;
        }
        ++started;
        const std::string path = "/runs/" + (*v)["id"].get_string("");
        for (;;) {
          auto g = c.Get(path.c_str());
          auto run = g ? orch::parse_json(g->body) : orch::Result<orch::Value>(orch::Status::internal("no reply"));
          const std::string status = run.ok() ? (*run)["status"].get_string("") : "";
          if (status == "completed") {
            if (measuring) ++ended_in_window;
            break;
          }
          if (status != "running" && status != "pending") {
            ++failed;
            break;
          }
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
    };
    std::vector<std::thread> clients;
    for (int t = 0; t < std::min(runs, 16); ++t) clients.emplace_back(client, t);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the load settles
    const auto window_start = Clock::now();
    const double cpu_start = orch_cpu_us(), pg_cpu_start = postgres_cpu_us();
    measuring = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    measuring = false;
    const double window_s = std::chrono::duration<double>(Clock::now() - window_start).count();
    const double cpu_end = orch_cpu_us(), pg_cpu_end = postgres_cpu_us();
    stop = true;
    for (auto& t : clients) t.join();
    const int64_t executions = ended_in_window.load() * kHelloNodesPerRun;
    out.runs_started = static_cast<int>(started.load());
    out.runs_failed = static_cast<int>(failed.load());
    out.executions_per_s = static_cast<double>(executions) / window_s;
    out.cpu_us_per_node = executions > 0 ? (cpu_end - cpu_start) / static_cast<double>(executions) : 0.0;
    out.postgres_cpu_us_per_node =
        executions > 0 ? (pg_cpu_end - pg_cpu_start) / static_cast<double>(executions) : 0.0;
    finish();
    return out;
  }
  std::string nodes, edges = R"(["__start__","n0"])";
  for (size_t i = 0; i < kNodesPerRun; ++i) {
    nodes += (i ? "," : "") + std::string("\"n") + std::to_string(i) + R"(":{"type":"task","prompt_template":"step )" +
             std::to_string(i) + R"("})";
    if (i > 0) edges += ",[\"n" + std::to_string(i - 1) + "\",\"n" + std::to_string(i) + "\"]";
  }
  edges += ",[\"n" + std::to_string(kNodesPerRun - 1) + R"(","__end__"])";
  api.Post("/workflows", R"({"id":"bench","nodes":{)" + nodes + "},\"edges\":[" + edges + "]}", "application/json");

  auto runs_in = [&](const char* status) {
    auto r = api.Get((std::string("/runs?status=") + status + "&limit=1").c_str());
    auto v = r ? orch::parse_json(r->body) : orch::Result<orch::Value>(orch::Status::internal("no reply"));
    return v.ok() ? static_cast<int>((*v)["items"].size()) : -1;
  };
  // Once the worker answered every node, only the runs' last commits are left:
  // the client polls only for that short tail (polling throughout would take
  // CPU from the server it measures).
  auto wait_for_runs = [&](int runs_finished) {
    {
      std::unique_lock<std::mutex> lock(timeline.mu);
      timeline.all_answered.wait_for(lock, std::chrono::seconds(30),
                                     [&] { return timeline.finished >= runs_finished; });
    }
    for (int spin = 0; spin < 15000 && runs_in("running") != 0; ++spin) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };

  // Warm-up: `runs` runs at once, until all end (threads, connections and
  // caches start up here).
  {
    std::vector<std::thread> starters;
    std::atomic<int> next{0};
    for (int t = 0; t < 8; ++t) {
      starters.emplace_back([&] {
        auto clients = clients_for_all();
        while (next++ < runs) {
          clients[next_instance++ % clients.size()]->Post("/workflows/bench/run", "{}", "application/json");
        }
      });
    }
    for (auto& t : starters) t.join();
    wait_for_runs(runs);
  }

  // Load: `runs` runs in flight; each run's last answer starts the next.
  {
    std::lock_guard<std::mutex> lock(timeline.mu);
    timeline.calls.clear();
    timeline.answered = 0;
    timeline.finished = 0;
    timeline.steady = true;
    timeline.to_start = runs;
  }
  bool stop = false;  // under timeline.mu
  std::atomic<int> started{0};
  std::vector<std::thread> starters;
  for (int t = 0; t < 8; ++t) {
    starters.emplace_back([&] {
      auto clients = clients_for_all();
      for (;;) {
        {
          std::unique_lock<std::mutex> lock(timeline.mu);
          timeline.start_wanted.wait(lock, [&] { return timeline.to_start > 0 || stop; });
          if (stop) return;
          --timeline.to_start;
        }
        auto r = clients[next_instance++ % clients.size()]->Post("/workflows/bench/run", "{}", "application/json");
        if (r && r->status / 100 == 2) ++started;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the load settles
  const auto window_start = Clock::now();
  const double cpu_start = orch_cpu_us(), pg_cpu_start = postgres_cpu_us();
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  const auto window_end = Clock::now();
  const double cpu_end = orch_cpu_us(), pg_cpu_end = postgres_cpu_us();
  {
    std::lock_guard<std::mutex> lock(timeline.mu);
    timeline.steady = false;
    stop = true;
  }
  timeline.start_wanted.notify_all();
  for (auto& t : starters) t.join();
  wait_for_runs(started.load());  // every started run must complete

  // Node executions answered inside the window, and the gaps inside it.
  std::vector<double> gaps_us;
  int64_t executions = 0;
  {
    std::lock_guard<std::mutex> lock(timeline.mu);
    for (auto& [run, calls] : timeline.calls) {
      for (size_t i = 0; i < calls.size(); ++i) {
        if (calls[i].second >= window_start && calls[i].second < window_end) ++executions;
        if (i > 0 && calls[i - 1].second >= window_start && calls[i].first < window_end) {
          gaps_us.push_back(std::chrono::duration<double, std::micro>(calls[i].first - calls[i - 1].second).count());
        }
      }
    }
  }
  const double window_s = std::chrono::duration<double>(window_end - window_start).count();
  const int running = runs_in("running");
  const int failed = runs_in("failed");
  std::string failure;
  if (failed > 0) {
    auto f = api.Get("/runs?status=failed&limit=1");
    auto fv = f ? orch::parse_json(f->body) : orch::Result<orch::Value>(orch::Status::internal("no reply"));
    if (fv.ok() && (*fv)["items"].size() > 0) {
      auto one = api.Get(("/runs/" + (*fv)["items"].at(0)->find("id")->as_string()).c_str());
      if (one) failure = orch::parse_json(one->body)->find("error_text")->get_string("");
    }
  }
  std::sort(gaps_us.begin(), gaps_us.end());
  auto pct = [&](double p) { return gaps_us.empty() ? 0.0 : gaps_us[static_cast<size_t>(p * (gaps_us.size() - 1))]; };
  out.runs_started = started.load();
  out.runs_left_running = running;
  out.runs_failed = failed;
  out.first_failure = failure;
  out.executions_per_s = static_cast<double>(executions) / window_s;
  out.cpu_us_per_node = executions > 0 ? (cpu_end - cpu_start) / static_cast<double>(executions) : 0.0;
  out.postgres_cpu_us_per_node = executions > 0 ? (pg_cpu_end - pg_cpu_start) / static_cast<double>(executions) : 0.0;
  out.p50_ms = pct(0.5) / 1000;
  out.p99_ms = pct(0.99) / 1000;
  finish();
  return out;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_server ORCH_BINARY [--runs N] [--db PATH|:memory:|postgres|postgres://...] "
                 "[--instances N] [--worker-ms N] [--seconds S] [--reps N] [--workflow bench|hello] "
                 "[--pg-notify on|off] [--pg-connections N] [--pg-writers N]\n");
    return 2;
  }
  Options options;
  options.orch_bin = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--runs") options.runs = std::max(1, std::atoi(argv[i + 1]));
    if (flag == "--db") options.db = argv[i + 1];
    if (flag == "--worker-ms") options.worker_ms = std::max(0, std::atoi(argv[i + 1]));
    if (flag == "--seconds") options.seconds = std::max(0.5, std::atof(argv[i + 1]));
    if (flag == "--reps") options.reps = std::max(1, std::atoi(argv[i + 1]));
    if (flag == "--workflow") options.hello = std::string(argv[i + 1]) == "hello";
    if (flag == "--instances") options.instances = std::clamp(std::atoi(argv[i + 1]), 1, 16);
    if (flag == "--pg-notify") options.pg_notify = argv[i + 1];
    if (flag == "--pg-connections") options.pg_connections = std::clamp(std::atoi(argv[i + 1]), 0, 64);
    if (flag == "--pg-writers") options.pg_writers = std::clamp(std::atoi(argv[i + 1]), 0, 64);
  }
  auto fail = [&](const std::string& why) {
    std::printf("{\"scenario\":\"server\",\"store\":\"%s\",\"instances\":%d,\"error\":%s}\n", store_name(options),
                options.instances, orch::Value(why).to_json().c_str());
    return 1;
  };
  // One orch serve per SQLite file (or memory store): only PostgreSQL is
  // shared.
  if (options.instances > 1 && !is_postgres(options)) return fail("--instances above 1 needs --db postgres");
  if (options.pg_notify != "followed" && options.pg_notify != "all" && options.pg_notify != "off") {
    return fail("--pg-notify takes followed, all or off");
  }
  if ((options.pg_notify != "followed" || options.pg_connections > 0 || options.pg_writers > 0) && !is_postgres(options)) {
    return fail("--pg-notify, --pg-connections and --pg-writers apply to --db postgres only");
  }
  // Repetitions, each with a fresh server and database: this machine's speed
  // drifts, and one window can land in a slow spell.
  std::vector<Measurement> reps;
  for (int r = 0; r < options.reps; ++r) {
    reps.push_back(measure_once(options, r));
    if (!reps.back().started) return fail(reps.back().error);
  }
  auto field = [&](double Measurement::*member) {
    std::vector<double> values;
    for (const Measurement& m : reps) values.push_back(m.*member);
    return values;
  };
  const std::vector<double> rates = field(&Measurement::executions_per_s);
  const std::vector<double> p50s = field(&Measurement::p50_ms);
  int started = 0, left_running = 0, failed = 0;
  std::string failure;
  for (const Measurement& m : reps) {
    started += m.runs_started;
    left_running += m.runs_left_running;
    failed += m.runs_failed;
    if (failure.empty()) failure = m.first_failure;
  }
  // PostgreSQL: the private server's CPU per node (none for a named one),
  // and whether the events trigger was on.
  std::string postgres_fields;
  if (is_postgres(options)) {
    if (options.db == "postgres") {
      char text[64];
      std::snprintf(text, sizeof(text), ",\"postgres_cpu_us_per_node\":%.0f",
                    median_of(field(&Measurement::postgres_cpu_us_per_node)));
      postgres_fields += text;
    }
    postgres_fields += ",\"pg_notify\":\"" + options.pg_notify + "\"";
    if (options.pg_connections > 0) {
      postgres_fields += ",\"pg_connections_per_instance\":" + std::to_string(options.pg_connections);
    }
  }
  std::printf(
      "{\"scenario\":\"%s\",\"store\":\"%s\",\"instances\":%d,\"runs_in_flight\":%d,\"nodes_per_run\":%d,\"worker_ms\":%d,"
      "\"seconds\":%.1f,\"reps\":%d,\"runs_started\":%d,\"runs_left_running\":%d,\"runs_failed\":%d,"
      "\"node_executions_per_s\":%.0f,\"node_executions_per_s_min\":%.0f,\"node_executions_per_s_max\":%.0f,"
      "\"orch_cpu_us_per_node\":%.0f,\"added_latency_p50_ms\":%.3f,\"added_latency_p50_ms_min\":%.3f,"
      "\"added_latency_p50_ms_max\":%.3f,\"added_latency_p99_ms\":%.3f,\"db_bytes_per_run\":%.0f,"
      "\"wal_peak_bytes\":%.0f,\"wal_end_bytes\":%.0f%s%s}\n",
      options.hello ? "server_hello" : "server", store_name(options), options.instances,
      options.hello ? std::min(options.runs, 16) : options.runs, options.hello ? kHelloNodesPerRun : static_cast<int>(kNodesPerRun), options.worker_ms, options.seconds,
      options.reps, started, left_running, failed, median_of(rates), *std::min_element(rates.begin(), rates.end()),
      *std::max_element(rates.begin(), rates.end()), median_of(field(&Measurement::cpu_us_per_node)), median_of(p50s),
      *std::min_element(p50s.begin(), p50s.end()), *std::max_element(p50s.begin(), p50s.end()),
      median_of(field(&Measurement::p99_ms)), median_of(field(&Measurement::db_bytes_per_run)),
      median_of(field(&Measurement::wal_peak_bytes)), median_of(field(&Measurement::wal_end_bytes)),
      postgres_fields.c_str(), failure.empty() ? "" : (",\"first_failure\":" + orch::Value(failure).to_json()).c_str());
  return left_running == 0 && failed == 0 ? 0 : 1;
}
