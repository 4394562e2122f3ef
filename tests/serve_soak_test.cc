// SPDX-License-Identifier: MIT
//
// Soaks: a steady stream of runs of a 9-node workflow that calls a webhook
// worker, while an `orch serve` is killed with SIGKILL at random moments
// (every 1.5-4 s) and restarted at once on the same port and database, for
// ORCH_SOAK_SECONDS (default 45). Two set-ups: one instance on SQLite, and
// three instances on one PostgreSQL database (one of them killed each time;
// its runs must be taken over by whichever instance gets them, and the time
// until every run that was running at the kill moved on again is reported).
// Afterwards, every run accepted (answered 2xx) must complete with every
// node's output, no node may have been called again after the call whose
// result the run recorded, the servers must stop cleanly on SIGTERM, and the
// database must be sound (SQLite: PRAGMA integrity_check; PostgreSQL: every
// run's event seqs without a gap).
//
// Knobs for longer or harder local soaks (defaults in brackets):
// ORCH_SOAK_SECONDS [45], ORCH_SOAK_SEED [20240611], ORCH_SOAK_SUBMIT_MS (one
// run per that many ms) [30], ORCH_SOAK_KILL_MIN_MS / ORCH_SOAK_KILL_MAX_MS
// (pause between kills) [1500 / 4000], ORCH_SOAK_WORKER_DELAY_MS [15];
// ORCH_SOAK_KEEP_DIR=1 keeps the database and the server's log.
//
// Each worker reply carries the call's arrival number ("echo: soak n3 #1234"),
// so the final state tells which call of each (run, node) was the recorded
// one; calls for the same (run, node) that arrived earlier are allowed
// re-executions (at-least-once), calls that arrived later are duplicates.
#include <httplib.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.h"
#include "support/brokers.h"
#include "support/fake_workers.h"
#include "support/figures.h"
#include "support/postgres_cluster.h"
#include "support/serve_process.h"

#ifndef ORCH_CLI
#error "ORCH_CLI must name the orch program"
#endif

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using orch::Value;
using orch::testing::ServeProcess;

namespace {

constexpr int kNodes = 9;
// Submissions pause while more runs than this are running (a slow build, e.g.
// ASan, must not build a backlog the drain cannot finish).
constexpr int kMaxRunning = 300;

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0') return fallback;
  return static_cast<int>(std::clamp<long>(n, lo, hi));
}

std::string node_name(int i) { return "n" + std::to_string(i + 1); }

// 9 task nodes in a chain; node nK sends the prompt "soak nK" and stores the
// worker's output in state key nK.
std::string workflow_json() {
  std::string schema, nodes, edges = R"(["__start__","n1"])";
  for (int i = 0; i < kNodes; ++i) {
    const std::string n = node_name(i);
    schema += (i ? "," : "") + ("\"" + n + "\":{\"type\":\"string\"}");
    nodes += (i ? "," : "") + ("\"" + n + R"(":{"type":"task","prompt_template":"soak )" + n +
                               R"(","output_key":")" + n + "\"}");
    if (i > 0) edges += ",[\"" + node_name(i - 1) + "\",\"" + n + "\"]";
  }
  edges += ",[\"" + node_name(kNodes - 1) + "\",\"__end__\"]";
  return R"({"id":"soak","state_schema":{)" + schema + R"(},"nodes":{)" + nodes + R"(},"edges":[)" +
         edges + "]}";
}

// "run_<run id>_step_<step>" -> "<run id>".
std::string run_of_session(const std::string& session) {
  if (session.rfind("run_", 0) != 0) return "";
  size_t step = session.find("_step_", 4);
  return step == std::string::npos ? "" : session.substr(4, step - 4);
}

// "echo: soak <node> #<call>" -> call; 0 when `v` is not that.
uint64_t call_of_output(const Value& v, const std::string& node) {
  if (!v.is_string()) return 0;
  const std::string prefix = "echo: soak " + node + " #";
  const std::string& s = v.as_string();
  if (s.rfind(prefix, 0) != 0) return 0;
  char* end = nullptr;
  unsigned long long n = std::strtoull(s.c_str() + prefix.size(), &end, 10);
  return *end == '\0' ? n : 0;
}

bool is_final(const std::string& status) {
  return status == "completed" || status == "failed" || status == "cancelled" ||
         status == "interrupted";
}

// Removes the directory on every exit path.
struct TempDir {
  std::filesystem::path path = orch::testing::make_temp_dir("orch-soak");
  ~TempDir() {
    const char* keep = std::getenv("ORCH_SOAK_KEEP_DIR");
    if (keep != nullptr && *keep == '1') {
      std::fprintf(stderr, "serve soak: kept %s\n", path.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Stops and joins the client thread on every exit path (a failed REQUIRE
// must not destroy a joinable std::thread).
struct ThreadGuard {
  std::atomic<bool>& stop;
  std::thread thread;
  ~ThreadGuard() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

// Starts the server, retrying a few times (a start can fail when the port is
// briefly unavailable).
bool start_with_retries(ServeProcess& server, int* failed_starts) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (server.start(120s)) return true;
    ++*failed_starts;
    std::this_thread::sleep_for(500ms);
  }
  return false;
}

std::string integrity_check(const std::string& db) {
  sqlite3* conn = nullptr;
  if (sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string error = conn ? sqlite3_errmsg(conn) : "cannot open";
    sqlite3_close(conn);
    return "open failed: " + error;
  }
  sqlite3_busy_timeout(conn, 10000);
  sqlite3_stmt* stmt = nullptr;
  std::string result;
  if (sqlite3_prepare_v2(conn, "PRAGMA integrity_check", -1, &stmt, nullptr) != SQLITE_OK) {
    result = std::string("prepare failed: ") + sqlite3_errmsg(conn);
  } else {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      result += (result.empty() ? "" : "; ") +
                std::string(text ? reinterpret_cast<const char*>(text) : "");
    }
    if (rc != SQLITE_DONE)
      result += std::string(result.empty() ? "" : "; ") + "step failed: " + sqlite3_errmsg(conn);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(conn);
  return result;
}

}  // namespace

// What differs between the soaks: the database, how many instances share it,
// what their config adds, and how the database is checked at the end.
struct SoakSetup {
  std::string label;          // for the figures line
  std::string db;             // --db of every instance
  int instances = 1;
  std::string extra_config;   // ", ..." members added to the config object
  std::function<std::string()> integrity;  // "ok" when the database is sound
  // After each kill, measure how long until every run that was running then
  // makes progress again (its runs taken over); needs a database query.
  std::function<std::map<std::string, int64_t>()> running_progress;  // run id -> its latest event seq
};

void soak(const SoakSetup& setup) {
  const int seconds = env_int("ORCH_SOAK_SECONDS", 45, 1, 24 * 3600);
  const unsigned seed = static_cast<unsigned>(env_int("ORCH_SOAK_SEED", 20240611, 0, 2147483647));
  const int submit_ms = env_int("ORCH_SOAK_SUBMIT_MS", 30, 1, 60000);
  const int kill_min_ms = env_int("ORCH_SOAK_KILL_MIN_MS", 1500, 1, 3600000);
  const int kill_max_ms = env_int("ORCH_SOAK_KILL_MAX_MS", 4000, kill_min_ms, 3600000);
  const int worker_delay_ms = env_int("ORCH_SOAK_WORKER_DELAY_MS", 15, 0, 60000);
  INFO("ORCH_SOAK_SECONDS=" << seconds << " ORCH_SOAK_SEED=" << seed << " ORCH_SOAK_SUBMIT_MS="
                            << submit_ms << " ORCH_SOAK_KILL_MIN_MS=" << kill_min_ms
                            << " ORCH_SOAK_KILL_MAX_MS=" << kill_max_ms
                            << " ORCH_SOAK_WORKER_DELAY_MS=" << worker_delay_ms);

  TempDir dir;
  orch::testing::FakeWorker worker(orch::testing::FakeWorker::Format::kWebhook, 64);
  orch::testing::FakeReply reply;
  reply.delay_ms = worker_delay_ms;  // calls are in flight when the kills come
  reply.echo_call_number = true;
  worker.set_default(reply);

  const int n = setup.instances;
  std::vector<std::unique_ptr<ServeProcess>> servers;
  std::vector<int> ports;
  for (int i = 0; i < n; ++i) {
    const std::string config = (dir.path / ("config" + std::to_string(i) + ".json")).string();
    // Each instance its own state dir (crash log, async replies).
    std::filesystem::create_directories(dir.path / ("state" + std::to_string(i)));
    std::ofstream(config) << R"({"workers": [{"id": "w", "url": ")" << worker.url()
                          << R"(", "token": "", "max_concurrent": 64}], "state_dir": ")"
                          << (dir.path / ("state" + std::to_string(i))).string() << "\"" << setup.extra_config << "}";
    ports.push_back(orch::testing::free_loopback_port_for_restarts());
    servers.push_back(std::make_unique<ServeProcess>(ORCH_CLI, ports.back(), setup.db, config,
                                                     (dir.path / ("serve" + std::to_string(i) + ".log")).string()));
  }
  int failed_starts = 0;
  for (auto& server : servers) REQUIRE(start_with_retries(*server, &failed_starts));
  {
    httplib::Client c("127.0.0.1", ports[0]);
    c.set_read_timeout(30, 0);
    auto r = c.Post("/workflows", workflow_json(), "application/json");
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 201);
  }

  // The client: one run every submit_ms, as long as the soak lasts, to the
  // instances in turn (the next one when an instance does not answer).
  std::mutex accepted_mu;
  std::vector<std::string> accepted;
  std::atomic<int> refused{0};    // no answer: the server was down or died mid-request
  std::atomic<int> rejected{0};   // an answer other than 2xx
  std::atomic<int> throttled{0};  // submissions skipped while kMaxRunning runs were running
  std::string first_rejection;    // written by the client thread only, read after join
  std::atomic<bool> stop{false};
  ThreadGuard client{
      stop, std::thread([&] {
        std::vector<std::unique_ptr<httplib::Client>> clients;
        for (int port : ports) {
          clients.push_back(std::make_unique<httplib::Client>("127.0.0.1", port));
          clients.back()->set_connection_timeout(1, 0);
          clients.back()->set_read_timeout(30, 0);
          clients.back()->set_write_timeout(30, 0);
        }
        auto next = Clock::now();
        bool busy = false;
        for (int k = 0; !stop; ++k) {
          httplib::Client& c = *clients[static_cast<size_t>(k % n)];
          // At most one submission per submit_ms: no catching up in a burst after a slow request.
          next = std::max(next + std::chrono::milliseconds(submit_ms), Clock::now());
          std::this_thread::sleep_until(next);
          if (busy || k % 10 == 0) {
            auto r = c.Get(
                ("/runs?status=running&limit=1&offset=" + std::to_string(kMaxRunning)).c_str());
            auto v =
                r && r->status == 200 ? orch::parse_json(r->body) : orch::Result<Value>(Value());
            const Value& page = v.ok() ? *v : Value();
            busy = page["items"].is_array() && page["items"].size() > 0;
            if (busy) {
              ++throttled;
              continue;
            }
          }
          auto r = c.Post("/runs",
                          R"({"workflow_id": "soak", "input": {"n": )" + std::to_string(k) + "}}",
                          "application/json");
          if (!r) {
            ++refused;
            continue;
          }
          auto v = orch::parse_json(r->body);
          const Value& answer = v.ok() ? *v : Value();
          if (r->status / 100 == 2 && answer["id"].is_string()) {
            std::lock_guard<std::mutex> lock(accepted_mu);
            accepted.push_back(answer["id"].as_string());
          } else {
            if (rejected++ == 0) first_rejection = std::to_string(r->status) + " " + r->body;
          }
        }
      })};

  // The killer: SIGKILL one instance at random moments, restart it at once.
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pause_ms(kill_min_ms, kill_max_ms);
  std::uniform_int_distribution<int> pick(0, n - 1);
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  int kills = 0;
  int crashes = 0;  // a server exited by itself
  std::string crash_log;
  auto crashed = [&](ServeProcess& server) {
    if (crashes++ == 0) {
      crash_log =
          "wait status " + std::to_string(server.exit_status()) + ", log:\n" + server.log_tail();
    }
  };
  int64_t slowest_restart_ms = 0;
  auto restart = [&](ServeProcess& server) {
    const auto begin = Clock::now();
    if (!start_with_retries(server, &failed_starts)) {
      FAIL("orch serve does not start again; its log:\n" << server.log_tail());
    }
    slowest_restart_ms = std::max<int64_t>(
        slowest_restart_ms,
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begin).count());
  };
  auto restart_crashed = [&] {
    for (auto& server : servers) {
      if (!server->alive()) {
        crashed(*server);
        restart(*server);
      }
    }
  };
  std::vector<int64_t> takeover_ms;  // per kill: until every run running at the kill moved on
  int takeovers_timed_out = 0;
  for (;;) {
    const auto moment = Clock::now() + std::chrono::milliseconds(pause_ms(rng));
    if (moment >= end) break;
    std::this_thread::sleep_until(moment);
    ServeProcess& victim = *servers[static_cast<size_t>(pick(rng))];
    std::map<std::string, int64_t> before;
    if (setup.running_progress) before = setup.running_progress();
    const auto killed_at = Clock::now();
    if (victim.alive()) {
      victim.kill_hard();
      ++kills;
    } else {
      crashed(victim);
    }
    restart(victim);
    if (setup.running_progress) {
      // Until every run that was running at the kill has ended or has a
      // newer event: the killed instance's runs only do once taken over.
      bool all_moved = false;
      while (!all_moved && Clock::now() - killed_at < 60s) {
        std::this_thread::sleep_for(100ms);
        const std::map<std::string, int64_t> now = setup.running_progress();
        all_moved = true;
        for (const auto& [id, seq] : before) {
          auto it = now.find(id);
          if (it != now.end() && it->second == seq) all_moved = false;
        }
      }
      if (all_moved) {
        takeover_ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at).count());
      } else {
        ++takeovers_timed_out;
      }
    }
  }
  std::this_thread::sleep_until(std::max(end, Clock::now()));
  stop = true;
  client.thread.join();
  const double soak_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  restart_crashed();

  // Drain: every accepted run reaches a final state (bounded).
  httplib::Client c("127.0.0.1", ports[0]);
  c.set_read_timeout(30, 0);
  std::map<std::string, Value> finished;  // run id -> GET /runs/{id}
  std::set<std::string> missing;
  std::set<std::string> remaining(accepted.begin(), accepted.end());
  const auto drain_deadline = Clock::now() + 120s;
  while (!remaining.empty() && Clock::now() < drain_deadline) {
    for (auto it = remaining.begin(); it != remaining.end();) {
      auto r = c.Get(("/runs/" + *it).c_str());
      if (r && r->status == 404) {
        missing.insert(*it);
        it = remaining.erase(it);
        continue;
      }
      auto v = r && r->status == 200 ? orch::parse_json(r->body) : orch::Result<Value>(Value());
      const Value& run = v.ok() ? *v : Value();
      if (is_final(run["status"].get_string(""))) {
        finished[*it] = run;
        it = remaining.erase(it);
        continue;
      }
      ++it;
    }
    if (!remaining.empty()) std::this_thread::sleep_for(250ms);
    restart_crashed();
  }
  // Which call of each (run, node) did the run record, and which came after it?
  std::map<std::pair<std::string, std::string>, std::vector<uint64_t>> calls_of;
  const std::vector<orch::testing::RecordedRequest> calls = worker.calls();
  for (const auto& call : calls) {
    const Value& body = call.json;
    std::string run = run_of_session(body["session_id"].get_string(""));
    std::string prompt = body["message"].get_string("");
    std::string node = prompt.rfind("soak ", 0) == 0 ? prompt.substr(5) : "";
    calls_of[{run, node}].push_back(call.call);
  }
  int completed = 0, not_completed = 0, bad_outputs = 0, before = 0, after = 0;
  std::vector<std::string> problems;  // the first few, for the failure message
  auto note = [&problems](std::string text) {
    if (problems.size() < 10) problems.push_back(std::move(text));
  };
  for (const std::string& id : missing) note("run " + id + " is missing");
  for (const std::string& id : remaining)
    note("run " + id + " did not finish within the drain bound");
  for (const auto& [id, run] : finished) {
    const std::string status = run["status"].get_string("");
    if (status != "completed") {
      ++not_completed;
      note("run " + id + " ended " + status + ": " + run["error_text"].get_string(""));
      continue;
    }
    ++completed;
    const Value& state = run["state_json"];
    for (int i = 0; i < kNodes; ++i) {
      const std::string node = node_name(i);
      const uint64_t recorded = call_of_output(state[node], node);
      const std::vector<uint64_t>& seen = calls_of[{id, node}];
      if (recorded == 0 || std::find(seen.begin(), seen.end(), recorded) == seen.end()) {
        ++bad_outputs;
        note("run " + id + " node " + node + ": state holds " + state[node].to_json() +
             ", not the output of one of its calls");
        continue;
      }
      for (uint64_t call : seen) {
        if (call < recorded) ++before;
        if (call > recorded) {
          ++after;
          note("run " + id + " node " + node + ": call #" + std::to_string(call) +
               " after the recorded call #" + std::to_string(recorded));
        }
      }
    }
  }
  const int lost = static_cast<int>(missing.size() + remaining.size()) + not_completed;
  std::string
      workers_view;  // the server's view of the worker (failures, last error), for failure messages
  if (auto r = c.Get("/workers")) workers_view = r->body;

  // A clean stop of every instance, then the database itself.
  bool clean_stop = true;
  std::string logs;
  for (auto& server : servers) {
    logs += server->log_tail(2000) + "\n---\n";
    const int stop_status = server->terminate(120s);
    clean_stop = clean_stop && stop_status != -1 && WIFEXITED(stop_status) && WEXITSTATUS(stop_status) == 0;
  }
  const std::string integrity = setup.integrity();
  std::string takeovers;
  if (setup.running_progress) {
    std::sort(takeover_ms.begin(), takeover_ms.end());
    takeovers = ", takeover after a kill " +
                (takeover_ms.empty() ? std::string("none measured")
                                     : "median " + std::to_string(takeover_ms[takeover_ms.size() / 2]) + " ms, max " +
                                           std::to_string(takeover_ms.back()) + " ms") +
                " (" + std::to_string(takeovers_timed_out) + " over 60 s)";
  }

  orch::testing::report_figures(
      setup.label,
      std::to_string(static_cast<int>(soak_seconds + 0.5)) + " s, " + std::to_string(n) + " instance(s), " +
          std::to_string(kills) +
          " kills survived, " + std::to_string(accepted.size()) + " runs accepted, " +
          std::to_string(completed) + " completed, " + std::to_string(lost) + " lost, " +
          std::to_string(calls.size()) + " worker calls, " + std::to_string(before) +
          " re-executions before a recorded result, " + std::to_string(after) +
          " executions after a recorded result, integrity_check " + integrity + " (" +
          std::to_string(refused) + " submissions unanswered while the server was down, " +
          std::to_string(throttled) + " throttled, slowest restart " +
          std::to_string(slowest_restart_ms) + " ms, " + std::to_string(crashes) + " crashes)" + takeovers);

  std::string problem_text;
  for (const std::string& p : problems) problem_text += p + "\n";
  INFO("problems (first 10):\n" << problem_text);
  INFO("first rejection: " << first_rejection);
  INFO("first crash: " << crash_log);
  INFO("GET /workers: " << workers_view);
  INFO("serve logs (tails):\n" << logs);
  CHECK(lost == 0);
  CHECK(bad_outputs == 0);
  CHECK(after == 0);
  CHECK(rejected == 0);
  CHECK(crashes == 0);
  CHECK(integrity == "ok");
  CHECK(clean_stop);
  CHECK(takeovers_timed_out == 0);
  // Pauses are at most kill_max_ms; a restart would have to take 7 s on
  // average to miss this.
  CHECK(kills >= std::max(1, seconds * 1000 / (kill_max_ms + 7000)));
  // The soak did submit work: a quarter of the submission rate, or half the
  // throttle's bound (throttling starts only once that many runs are running).
  CHECK(accepted.size() >=
        std::min<size_t>(kMaxRunning / 2, static_cast<size_t>(seconds) * 1000 / submit_ms / 4));
  CHECK(calls.size() >= accepted.size() * kNodes);
}

TEST_CASE("orch serve SIGKILLed at random under load: no run lost, no recorded node re-run",
          "[soak]") {
  TempDir db_dir;
  const std::string db = (db_dir.path / "orch.db").string();
  SoakSetup setup;
  setup.label = "serve soak";
  setup.db = db;
  setup.integrity = [db] { return integrity_check(db); };
  soak(setup);
}

TEST_CASE("three orch serve on one PostgreSQL, one SIGKILLed at random: its runs are taken over, none lost",
          "[soak][postgres][failover]") {
  auto shared = orch::testing::shared_postgres_cluster();
  INFO(shared.status().to_string());
  REQUIRE(shared.ok());
  orch::testing::PostgresCluster& pg = **shared;
  SoakSetup setup;
  setup.label = "failover soak";
  setup.db = pg.uri();
  setup.instances = 3;
  // A short lease: a killed instance's runs are taken over within seconds.
  setup.extra_config = R"(, "postgres": {"schema": "failover"}, "engine": {"lease_ttl_ms": 2000})";
  auto query = [&pg](const std::string& sql) { return pg.psql(sql, "orch"); };
  setup.integrity = [query] {
    // Every run row has its events numbered 1..n with no gap (a row holds
    // event_count of them, up to last_seq).
    auto gaps = query("SELECT count(*) FROM failover.runs r WHERE (SELECT coalesce(max(last_seq), 0) - "
                      "coalesce(sum(event_count), 0) FROM failover.events e WHERE e.run_pk = r.pk) <> 0");
    if (!gaps.ok()) return gaps.status().to_string();
    std::string count = *gaps;
    count.erase(std::remove_if(count.begin(), count.end(), [](char ch) { return std::isspace(static_cast<unsigned char>(ch)); }), count.end());
    return count == "0" ? std::string("ok") : "runs with event seq gaps: " + count;
  };
  setup.running_progress = [query] {
    std::map<std::string, int64_t> out;
    auto rows = query("SELECT r.id || ' ' || coalesce((SELECT max(last_seq) FROM failover.events e WHERE e.run_pk = r.pk), 0) "
                      "FROM failover.runs r WHERE r.status = 'running'");
    if (!rows.ok()) return out;
    std::istringstream lines(*rows);
    std::string id;
    int64_t seq = 0;
    while (lines >> id >> seq) out[id] = seq;
    return out;
  };
  soak(setup);
}
