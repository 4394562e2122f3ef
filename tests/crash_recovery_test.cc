// SPDX-License-Identifier: MIT
//
// Crash test: a child process runs 50 workflows against a SQLite file (or a
// PostgreSQL database) and is killed with SIGKILL at random moments, 20
// times; each restart recovers the runs. At the end every run completed with
// the state of an uninterrupted run, and no node ran again after its result
// was recorded.
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "catch.h"
#include "orch/id.h"
#include "orch/postgres_store.h"
#include "orch/sqlite_store.h"
#include "support/figures.h"
#include "support/postgres_cluster.h"

#ifndef ORCH_CRASH_CHILD
#error "ORCH_CRASH_CHILD must name the crash_child program"
#endif

using namespace std::chrono_literals;

namespace {

pid_t spawn(const std::string& db, const std::string& log, const char* mode = nullptr) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    if (mode != nullptr) dup2(devnull, STDERR_FILENO);  // a sanitizer's report of the planned crash
    execl(ORCH_CRASH_CHILD, ORCH_CRASH_CHILD, db.c_str(), log.c_str(), mode, static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Kills the child on `db` 20 times, each `first_kill_ms` plus up to 60 ms
// after its start, lets it finish, checks what survived. `store_name`
// labels the figures.
void kill_and_check(const std::string& db, const std::string& log, const std::string& store_name,
                    int first_kill_ms) {
  std::mt19937 rng(12345);
  int kills = 0;
  for (int round = 0; kills < 20 && round < 60; ++round) {
    pid_t child = spawn(db, log);
    std::this_thread::sleep_for(std::chrono::milliseconds(first_kill_ms + rng() % 60));
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == 0) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      ++kills;
    }
  }
  // A last start without interruption finishes whatever is left.
  pid_t child = spawn(db, log);
  int status = 0;
  for (int i = 0; i < 1200 && waitpid(child, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(50ms);
  if (waitpid(child, &status, WNOHANG) == 0) {
    kill(child, SIGKILL);
    FAIL("the final run of the child did not finish within 60 s");
  }
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  INFO("kills survived: " << kills);

  // Every run completed with exactly the state of an uninterrupted run.
  auto store = orch::is_postgres_uri(db) ? orch::new_postgres_store(db) : orch::open_sqlite_store(db);
  REQUIRE(store.ok());
  int lost = 0;
  for (int i = 0; i < 50; ++i) {
    auto run = (*store)->get_run("run-" + std::to_string(i));
    if (!run.ok() || run->status != orch::RunStatus::kCompleted) ++lost;
    REQUIRE(run.ok());
    CHECK(run->status == orch::RunStatus::kCompleted);
    CHECK(run->state["count"].as_int() == 5);
    std::multiset<std::string> trace;
    for (const orch::Value& v : run->state["trace"].as_array()) trace.insert(v.as_string());
    CHECK(trace == std::multiset<std::string>{"a", "b1", "b2", "join", "c"});
  }

  // No node executed after its result for that superstep had been recorded.
  std::ifstream in(log);
  std::set<std::string> recorded;
  std::string line;
  int executions = 0, duplicates = 0;
  while (std::getline(in, line)) {
    if (line.size() < 2) continue;
    std::string key = line.substr(2);
    if (line[0] == 'R') recorded.insert(key);
    if (line[0] == 'E') {
      ++executions;
      if (recorded.count(key)) ++duplicates;
    }
  }
  orch::testing::report_figures(
      "crash test (" + store_name + ")",
      std::to_string(kills) + " kills survived, " + std::to_string(executions) + " node executions, " +
          std::to_string(duplicates) + " after a recorded result, " + std::to_string(lost) + " runs lost (50 runs)");
  CHECK(duplicates == 0);
  CHECK(lost == 0);
  CHECK(kills == 20);
  CHECK(executions >= 250);
}

}  // namespace

TEST_CASE("SIGKILL at random moments: every run completes, no recorded node runs twice", "[crash][sqlite]") {
  auto dir = std::filesystem::temp_directory_path() / ("orch-crash-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  kill_and_check((dir / "orch.db").string(), (dir / "effects.log").string(), "sqlite", 5);
  std::filesystem::remove_all(dir);
}

TEST_CASE("SIGKILL at random moments on PostgreSQL: every run completes, no recorded node runs twice", "[crash][postgres]") {
  auto cluster = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << cluster.status().to_string());
  REQUIRE(cluster.ok());
  auto dir = std::filesystem::temp_directory_path() / ("orch-crash-pg-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  // A child takes longer to start on PostgreSQL (connecting, reading the
  // runs back): the kills come later so that they land while nodes run.
  kill_and_check((*cluster)->uri(), (dir / "effects.log").string(), "postgres", 40);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a run that crashes its process is resumed max_recoveries times, then failed", "[crash][sqlite][hardening]") {
  // Without crash attribution it would crash the process on every restart,
  // for ever. The run beside it, only in flight at each crash, completes.
  auto dir = std::filesystem::temp_directory_path() / ("orch-crash-loop-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  const std::string db = (dir / "orch.db").string();
  int crashes = 0, clean_exits = 0;
  for (int start = 0; start < 8 && clean_exits == 0; ++start) {
    pid_t child = spawn(db, (dir / "unused.log").string(), "--crash-loop");
    int status = 0;
    for (int i = 0; i < 600 && waitpid(child, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(50ms);
    if (waitpid(child, &status, WNOHANG) == 0) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      FAIL("the child neither crashed nor finished within 30 s");
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++clean_exits;
    } else {
      ++crashes;
    }
  }
  CHECK(crashes == 4);  // the first run and 3 resumes (max_recoveries)
  CHECK(clean_exits == 1);
  auto store = orch::open_sqlite_store(db);
  REQUIRE(store.ok());
  auto bad = (*store)->get_run("bad");
  REQUIRE(bad.ok());
  CHECK(bad->status == orch::RunStatus::kFailed);
  CHECK(bad->error.find("crashed while executing this run") != std::string::npos);
  CHECK(bad->recoveries == 3);
  auto good = (*store)->get_run("good");
  REQUIRE(good.ok());
  CHECK(good->status == orch::RunStatus::kCompleted);
  CHECK(good->recoveries == 0);
  std::filesystem::remove_all(dir);
}
