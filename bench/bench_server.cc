// SPDX-License-Identifier: MIT
//
// Server benchmark: `orch serve` (a child process, real HTTP) with its store,
// a webhook worker on loopback answering at once (loopback_worker.h: one
// event-loop thread, so it takes little of the CPU orch needs), and R
// concurrent runs of a 10-node workflow. Prints one JSON line: node executions per second, and the
// latency orch adds per node beyond the worker's own time (p50/p99), measured
// in the worker as the gap between answering node i and receiving node i+1 of
// the same run.
//
// With --worker-ms the worker takes that long per call, as a model would: the
// added latency is then not dominated by runs queueing for the CPU (with R
// runs in flight and an instant worker, Little's law makes each node wait
// about R / throughput).
//
// After a warm-up round, --reps rounds (default 5) each start R new runs at
// once and wait for them all to end: node executions per second is the median
// round's, the latency percentiles are over every measured round's nodes.
//
//   bench_server ORCH_BINARY [--runs 100] [--db PATH|:memory:] [--worker-ms 0] [--reps 5]
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_api.h"
#include "loopback_worker.h"
#include "orch/value.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Timeline {
  std::mutex mu;
  // run id -> (arrival, reply) times of its worker calls, in order.
  std::map<std::string, std::vector<std::pair<Clock::time_point, Clock::time_point>>> calls;
  int answered = 0;
  std::condition_variable all_answered;
};

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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_server ORCH_BINARY [--runs N] [--db PATH] [--worker-ms N] [--reps N]\n");
    return 2;
  }
  std::string orch_bin = argv[1];
  int runs = 100;
  int worker_ms = 0;
  int reps = 5;
  std::string db = "/tmp/orch-bench-server.db";
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
    if (flag == "--db") db = argv[i + 1];
    if (flag == "--worker-ms") worker_ms = std::max(0, std::atoi(argv[i + 1]));
    if (flag == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());

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
        timeline.calls[run].emplace_back(arrived, answered);
        ++timeline.answered;
        timeline.all_answered.notify_all();
      });
  const int worker_port = worker.port();

  // orch serve, configured with that worker.
  int port = free_port();
  std::string config_path = "/tmp/orch-bench-server-config.json";
  std::ofstream(config_path) << R"({"workers": [{"id": "w", "url": "http://127.0.0.1:)" << worker_port
                             << R"(/webhook", "token": "", "max_concurrent": 1000}], "http": {"threads": 64}})";
  pid_t child = fork();
  if (child == 0) {
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
    std::printf("{\"scenario\":\"server\",\"error\":\"orch serve did not start\"}\n");
    kill(child, SIGKILL);
    return 1;
  }
  std::string nodes, edges = R"(["__start__","n0"])";
  for (int i = 0; i < 10; ++i) {
    nodes += (i ? "," : "") + std::string("\"n") + std::to_string(i) + R"(":{"type":"task","prompt_template":"step )" +
             std::to_string(i) + R"("})";
    if (i > 0) edges += ",[\"n" + std::to_string(i - 1) + "\",\"n" + std::to_string(i) + "\"]";
  }
  edges += R"(,["n9","__end__"])";
  api.Post("/workflows", R"({"id":"bench","nodes":{)" + nodes + "},\"edges\":[" + edges + "]}", "application/json");

  // One round: `runs` new runs at once, until every one has ended. Returns
  // the round's wall seconds and appends its per-node gaps (µs).
  auto round = [&](std::vector<double>* gaps_us) {
    {
      std::lock_guard<std::mutex> lock(timeline.mu);
      timeline.calls.clear();
      timeline.answered = 0;
    }
    auto start = Clock::now();
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
    // The worker hears every node of every run; once it answered them all, only
    // the last commits are left, so the client polls only for that short tail
    // (polling throughout would take CPU from the server it measures).
    {
      std::unique_lock<std::mutex> lock(timeline.mu);
      timeline.all_answered.wait_for(lock, std::chrono::seconds(30), [&] { return timeline.answered >= runs * 10; });
    }
    for (int spin = 0; spin < 30000; ++spin) {
      auto r = api.Get("/runs?status=running&limit=1");
      auto v = r ? orch::parse_json(r->body) : orch::Result<orch::Value>(orch::Status::internal("no reply"));
      if (v.ok() && (*v)["items"].size() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::lock_guard<std::mutex> lock(timeline.mu);
    for (auto& [run, calls] : timeline.calls) {
      for (size_t i = 1; i < calls.size(); ++i) {
        gaps_us->push_back(std::chrono::duration<double, std::micro>(calls[i].first - calls[i - 1].second).count());
      }
    }
    return elapsed;
  };

  std::vector<double> warmup_gaps;
  round(&warmup_gaps);  // threads, connections and caches start up here
  std::vector<double> gaps_us;
  std::vector<double> rates;
  std::vector<double> elapsed_ms;
  for (int rep = 0; rep < reps; ++rep) {
    double seconds = round(&gaps_us);
    elapsed_ms.push_back(seconds * 1000);
    rates.push_back(runs * 10 / seconds);
  }
  int completed = 0;
  std::string failure;
  {
    auto r = api.Get(("/runs?status=completed&limit=" + std::to_string(runs * (reps + 1))).c_str());
    auto v = r ? orch::parse_json(r->body) : orch::Result<orch::Value>(orch::Status::internal("no reply"));
    completed = v.ok() ? static_cast<int>((*v)["items"].size()) : 0;
    auto f = api.Get("/runs?status=failed&limit=1");
    auto fv = f ? orch::parse_json(f->body) : orch::Result<orch::Value>(orch::Status::internal("no reply"));
    if (fv.ok() && (*fv)["items"].size() > 0) {
      auto one = api.Get(("/runs/" + (*fv)["items"].at(0)->find("id")->as_string()).c_str());
      if (one) failure = orch::parse_json(one->body)->find("error_text")->get_string("");
    }
  }
  std::sort(gaps_us.begin(), gaps_us.end());
  std::sort(rates.begin(), rates.end());
  std::sort(elapsed_ms.begin(), elapsed_ms.end());
  auto pct = [&](double p) { return gaps_us.empty() ? 0.0 : gaps_us[static_cast<size_t>(p * (gaps_us.size() - 1))]; };
  std::printf(
      "{\"scenario\":\"server\",\"store\":\"%s\",\"runs\":%d,\"nodes_per_run\":10,\"worker_ms\":%d,\"reps\":%d,"
      "\"completed\":%d,\"median_ms\":%.1f,\"min_ms\":%.1f,\"max_ms\":%.1f,\"node_executions_per_s\":%.0f,"
      "\"added_latency_p50_ms\":%.3f,\"added_latency_p99_ms\":%.3f%s}\n",
      db == ":memory:" ? "memory" : "sqlite", runs, worker_ms, reps, completed, elapsed_ms[elapsed_ms.size() / 2],
      elapsed_ms.front(), elapsed_ms.back(), rates[rates.size() / 2], pct(0.5) / 1000, pct(0.99) / 1000,
      failure.empty() ? "" : (",\"first_failure\":" + orch::Value(failure).to_json()).c_str());
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);
  return completed == runs * (reps + 1) ? 0 : 1;
}
