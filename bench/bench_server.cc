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
//   bench_server ORCH_BINARY [--runs 100] [--db PATH|:memory:] [--worker-ms 0] [--seconds 3] [--reps 3]
//                [--workflow bench|hello]
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

// CPU time (user + system) the process has used so far, in microseconds.
double cpu_us_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) start past ')'.
  size_t at = text.rfind(')');
  if (at == std::string::npos) return 0;
  std::istringstream fields(text.substr(at + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt
  double utime = 0, stime = 0;
  fields >> utime >> stime;
  return (utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
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
};

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
  std::string first_failure;
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

// A fresh database and `orch serve`, warm-up, load, measured window.
Measurement measure_once(const Options& options) {
  const std::string& orch_bin = options.orch_bin;
  const int runs = options.runs;
  const int worker_ms = options.worker_ms;
  const double seconds = options.seconds;
  // A private directory per repetition for the config (and the database
  // unless one was named): nothing is shared with another bench's files.
  char dir_template[] = "/tmp/orch-bench-server-XXXXXX";
  const char* made = mkdtemp(dir_template);
  if (made == nullptr) return Measurement{};
  const std::string dir = made;
  const std::string db = options.db.empty() ? dir + "/orch.db" : options.db;
  const bool on_disk = db != ":memory:";
  Measurement out;
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  // Everything orch serve left beside the database goes too (orch-async/,
  // orch.db.crashes); a database named with --db lies elsewhere and stays.
  auto remove_dir = [&] {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  };

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

  // orch serve, configured with that worker.
  int port = free_port();
  std::string config_path = dir + "/config.json";
  std::ofstream(config_path) << R"({"workers": [{"id": "w", "url": "http://127.0.0.1:)" << worker_port
                             << R"(/webhook", "token": "", "max_concurrent": 1000}], "http": {"threads": 64}})";
  pid_t child = fork();
  if (child == 0) {
    // Its log stays out of the bench's JSON line (and costs no terminal time).
    const int null_fd = ::open("/dev/null", O_WRONLY);
    if (null_fd >= 0) {
      dup2(null_fd, STDOUT_FILENO);
      dup2(null_fd, STDERR_FILENO);
    }
    std::string port_arg = std::to_string(port);
    execl(orch_bin.c_str(), orch_bin.c_str(), "serve", "--port", port_arg.c_str(), "--db", db.c_str(), "--config",
          config_path.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  httplib::Client api("127.0.0.1", port);
  api.set_tcp_nodelay(true);
  bool up = false;
  for (int i = 0; i < 500 && !up; ++i) {
    auto r = api.Get("/health");
    up = r && r->status == 200;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!up) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    remove_dir();
    return out;
  }
  out.started = true;
  std::optional<SizeSampler> wal_sampler;
  if (on_disk) wal_sampler.emplace(db + "-wal");
  auto finish = [&] {
    if (on_disk) {
      out.wal_peak_bytes = static_cast<double>(wal_sampler->peak());
      wal_sampler.reset();
      out.wal_end_bytes = static_cast<double>(file_size(db + "-wal"));
      out.db_bytes_per_run = stored_bytes_per_run(db);
    }
    kill(child, SIGTERM);
    waitpid(child, nullptr, 0);
    remove_dir();
  };
  if (options.hello) {
    api.Post("/workflows", kHelloWorkflow, "application/json");
    // Each client: start a run, poll it until it ends, again; until `stop`.
    std::atomic<bool> stop{false}, measuring{false};
    std::atomic<int64_t> ended_in_window{0}, failed{0}, started{0};
    auto client = [&] {
      httplib::Client c("127.0.0.1", port);
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
    for (int t = 0; t < std::min(runs, 16); ++t) clients.emplace_back(client);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the load settles
    const auto window_start = Clock::now();
    const double cpu_start = cpu_us_of(child);
    measuring = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    measuring = false;
    const double window_s = std::chrono::duration<double>(Clock::now() - window_start).count();
    const double cpu_end = cpu_us_of(child);
    stop = true;
    for (auto& t : clients) t.join();
    const int64_t executions = ended_in_window.load() * kHelloNodesPerRun;
    out.runs_started = static_cast<int>(started.load());
    out.runs_failed = static_cast<int>(failed.load());
    out.executions_per_s = static_cast<double>(executions) / window_s;
    out.cpu_us_per_node = executions > 0 ? (cpu_end - cpu_start) / static_cast<double>(executions) : 0.0;
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
        httplib::Client c("127.0.0.1", port);
        c.set_tcp_nodelay(true);
        while (next++ < runs) c.Post("/workflows/bench/run", "{}", "application/json");
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
      httplib::Client c("127.0.0.1", port);
      c.set_tcp_nodelay(true);
      for (;;) {
        {
          std::unique_lock<std::mutex> lock(timeline.mu);
          timeline.start_wanted.wait(lock, [&] { return timeline.to_start > 0 || stop; });
          if (stop) return;
          --timeline.to_start;
        }
        auto r = c.Post("/workflows/bench/run", "{}", "application/json");
        if (r && r->status / 100 == 2) ++started;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the load settles
  const auto window_start = Clock::now();
  const double cpu_start = cpu_us_of(child);
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  const auto window_end = Clock::now();
  const double cpu_end = cpu_us_of(child);
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
                 "usage: bench_server ORCH_BINARY [--runs N] [--db PATH] [--worker-ms N] [--seconds S] [--reps N] "
                 "[--workflow bench|hello]\n");
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
  }
  // Repetitions, each with a fresh server and database: this machine's speed
  // drifts, and one window can land in a slow spell.
  std::vector<Measurement> reps;
  for (int r = 0; r < options.reps; ++r) {
    reps.push_back(measure_once(options));
    if (!reps.back().started) {
      std::printf("{\"scenario\":\"server\",\"error\":\"orch serve did not start\"}\n");
      return 1;
    }
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
  std::printf(
      "{\"scenario\":\"%s\",\"store\":\"%s\",\"runs_in_flight\":%d,\"nodes_per_run\":%d,\"worker_ms\":%d,"
      "\"seconds\":%.1f,\"reps\":%d,\"runs_started\":%d,\"runs_left_running\":%d,\"runs_failed\":%d,"
      "\"node_executions_per_s\":%.0f,\"node_executions_per_s_min\":%.0f,\"node_executions_per_s_max\":%.0f,"
      "\"orch_cpu_us_per_node\":%.0f,\"added_latency_p50_ms\":%.3f,\"added_latency_p50_ms_min\":%.3f,"
      "\"added_latency_p50_ms_max\":%.3f,\"added_latency_p99_ms\":%.3f,\"db_bytes_per_run\":%.0f,"
      "\"wal_peak_bytes\":%.0f,\"wal_end_bytes\":%.0f%s}\n",
      options.hello ? "server_hello" : "server", options.db == ":memory:" ? "memory" : "sqlite",
      options.hello ? std::min(options.runs, 16) : options.runs, options.hello ? kHelloNodesPerRun : static_cast<int>(kNodesPerRun), options.worker_ms, options.seconds,
      options.reps, started, left_running, failed, median_of(rates), *std::min_element(rates.begin(), rates.end()),
      *std::max_element(rates.begin(), rates.end()), median_of(field(&Measurement::cpu_us_per_node)), median_of(p50s),
      *std::min_element(p50s.begin(), p50s.end()), *std::max_element(p50s.begin(), p50s.end()),
      median_of(field(&Measurement::p99_ms)), median_of(field(&Measurement::db_bytes_per_run)),
      median_of(field(&Measurement::wal_peak_bytes)), median_of(field(&Measurement::wal_end_bytes)),
      failure.empty() ? "" : (",\"first_failure\":" + orch::Value(failure).to_json()).c_str());
  return left_running == 0 && failed == 0 ? 0 : 1;
}
