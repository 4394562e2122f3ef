// SPDX-License-Identifier: MIT
//
// fake_agent: a stand-in for a nullclaw subprocess in pull-mode tests. It is
// started as orch starts agents,
//
//   fake_agent [options...] --port <p> --workdir <dir>
//
// and speaks the same HTTP: GET /health, POST /webhook {"message": "..."},
// answering {"response": "turn N: <message start>", "done": <bool>}.
//
// Scripting, by option or environment variable (options win):
//   --done-after N     FAKE_AGENT_DONE_AFTER   answer done:true at turn N (0: never)
//   --delay-ms N       FAKE_AGENT_DELAY_MS     each turn takes N ms
//   --fail MODE        FAKE_AGENT_FAIL         health: /health answers 500;
//                                              turn: every turn answers 500;
//                                              crash: exit(3) at the first turn;
//                                              start: exit(2) before listening
//   --hang MODE        FAKE_AGENT_HANG         health | turn: never answer (silently)
//   --log FILE         FAKE_AGENT_LOG          append one JSON line per event
//   --chatty KB        FAKE_AGENT_CHATTY       write KB KiB to stdout per turn
//   --transition TRIG  FAKE_AGENT_TRANSITION   at turn 1, move the task itself via
//                                              $ORCH_TRACKER_URL with $ORCH_LEASE_TOKEN
//   --child                                    start `sleep 60` and log its pid
// Log lines: {"event":"start"|"turn"|"health", "pid", "cwd", "workdir", "turn",
// "message", "auth", "task_id", "attempt", "child_pid"}.
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "orch/value.h"

namespace {

struct Script {
  int port = 0;
  std::string workdir;
  int done_after = 0;
  int delay_ms = 0;
  std::string fail;
  std::string hang;
  std::string log;
  int chatty_kb = 0;
  std::string transition;
  bool child = false;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

std::mutex g_log_mu;

void log_line(const Script& s, orch::Value entry) {
  if (s.log.empty()) return;
  entry.set("pid", static_cast<long long>(getpid()));
  std::lock_guard<std::mutex> lock(g_log_mu);
  std::ofstream out(s.log, std::ios::app);
  out << entry.to_json() << "\n";
}

void hang_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace

int main(int argc, char** argv) {
  Script s;
  s.done_after = std::atoi(env_or("FAKE_AGENT_DONE_AFTER", "0").c_str());
  s.delay_ms = std::atoi(env_or("FAKE_AGENT_DELAY_MS", "0").c_str());
  s.fail = env_or("FAKE_AGENT_FAIL", "");
  s.hang = env_or("FAKE_AGENT_HANG", "");
  s.log = env_or("FAKE_AGENT_LOG", "");
  s.chatty_kb = std::atoi(env_or("FAKE_AGENT_CHATTY", "0").c_str());
  s.transition = env_or("FAKE_AGENT_TRANSITION", "");
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--port") s.port = std::atoi(next().c_str());
    else if (a == "--workdir") s.workdir = next();
    else if (a == "--done-after") s.done_after = std::atoi(next().c_str());
    else if (a == "--delay-ms") s.delay_ms = std::atoi(next().c_str());
    else if (a == "--fail") s.fail = next();
    else if (a == "--hang") s.hang = next();
    else if (a == "--log") s.log = next();
    else if (a == "--chatty") s.chatty_kb = std::atoi(next().c_str());
    else if (a == "--transition") s.transition = next();
    else if (a == "--child") s.child = true;
  }
  if (s.port <= 0) {
    std::cerr << "fake_agent: --port is required\n";
    return 2;
  }
  orch::Value start = orch::Value::object({{"event", "start"},
                                           {"cwd", std::filesystem::current_path().string()},
                                           {"workdir", s.workdir},
                                           {"task_id", env_or("ORCH_TASK_ID", "")},
                                           {"attempt", env_or("ORCH_ATTEMPT", "")}});
  if (s.child) {
    pid_t pid = fork();
    if (pid == 0) {
      execlp("sleep", "sleep", "60", static_cast<char*>(nullptr));
      _exit(127);
    }
    start.set("child_pid", static_cast<long long>(pid));
  }
  log_line(s, start);
  if (s.fail == "start") return 2;

  std::atomic<int> turns{0};
  httplib::Server svr;
  svr.set_tcp_nodelay(true);
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    log_line(s, orch::Value::object({{"event", "health"}}));
    if (s.hang == "health") hang_forever();
    res.status = s.fail == "health" ? 500 : 200;
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Post("/webhook", [&](const httplib::Request& req, httplib::Response& res) {
    const int turn = ++turns;
    auto body = orch::parse_json(req.body);
    const orch::Value doc = body.ok() ? *body : orch::Value();
    std::string message = doc["message"].get_string("");
    log_line(s, orch::Value::object({{"event", "turn"},
                                     {"turn", turn},
                                     {"message", message},
                                     {"auth", req.get_header_value("Authorization")},
                                     {"cwd", std::filesystem::current_path().string()}}));
    if (s.hang == "turn") hang_forever();
    if (s.fail == "crash") _exit(3);
    for (int k = 0; k < s.chatty_kb; ++k) {
      std::string line(1023, 'x');
      std::cout << line << "\n";
    }
    std::cout.flush();
    if (s.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(s.delay_ms));
    if (turn == 1 && !s.transition.empty()) {
      // An agent that finishes its task itself, through orch's claim.
      httplib::Client cli(env_or("ORCH_TRACKER_URL", ""));
      cli.set_bearer_token_auth(env_or("ORCH_LEASE_TOKEN", ""));
      orch::Value t = orch::Value::object({{"trigger", s.transition}});
      auto r = cli.Post("/runs/" + env_or("ORCH_TRACKER_RUN_ID", "") + "/transition", t.to_json(), "application/json");
      log_line(s, orch::Value::object({{"event", "transition"}, {"status", r ? r->status : 0}}));
    }
    if (s.fail == "turn") {
      res.status = 500;
      res.set_content("scripted failure", "text/plain");
      return;
    }
    const bool done = s.done_after > 0 && turn >= s.done_after;
    orch::Value out = orch::Value::object({{"response", "turn " + std::to_string(turn) + ": " + message.substr(0, 40)},
                                           {"done", done},
                                           {"usage", orch::Value::object({{"input_tokens", 10}, {"output_tokens", 5}})}});
    res.set_content(out.to_json(), "application/json");
  });
  if (!svr.listen("127.0.0.1", s.port)) {
    std::cerr << "fake_agent: cannot listen on port " << s.port << "\n";
    return 1;
  }
  return 0;
}
