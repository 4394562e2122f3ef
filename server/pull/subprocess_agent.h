// SPDX-License-Identifier: MIT
//
// SubprocessAgent: one agent program (nullclaw by default) spawned for one
// pull-mode task, spoken to over HTTP on a loopback port as NullBoiler does
// (reference/nullboiler-api.md §8.4):
//
//   <command> <args...> --port <port> --workdir <workspace>   (cwd = workspace)
//   GET  http://127.0.0.1:<port>/health      2xx = ready
//   POST http://127.0.0.1:<port>/webhook     {"message": "<prompt>"}  one turn
//
// A turn's answer is read leniently: a JSON object's `response` / `output` /
// `text` / `message` / `reply` string is the output (else the whole body),
// `done: true` ends the turn loop early and `usage` is accumulated. A non-2xx
// answer or no answer fails the turn (NullBoiler counted those as turns).
//
// Unlike NullBoiler, the agent's stdout/stderr are drained continuously on a
// thread of its own (a chatty agent never blocks on a full pipe); any output
// counts as activity for stall detection, and the last 4 KiB are kept for
// error messages. The agent runs in its own process group, killed as a whole.
//
// Thread-safety: kill_now(), last_activity_ms(), exited() and output_tail()
// may be called from any thread; one thread drives the HTTP calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pull/child_process.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch::server {

struct AgentTurn {
  std::string output;
  bool done = false;
  Value usage;  // {"input_tokens","output_tokens"} or null
};

class SubprocessAgent {
 public:
  struct Options {
    std::string command;
    std::vector<std::string> args;
    int port = 0;
    std::string workdir;
    std::vector<std::pair<std::string, std::string>> env;
    std::vector<std::string> inherit_env;  // parent variables let through (SpawnOptions::inherit)
    std::string token;  // sent as a bearer token on every call when set
  };

  static Result<std::unique_ptr<SubprocessAgent>> start(Options options);
  // Kills the process group (if still running) and joins the drain thread.
  ~SubprocessAgent();

  // One GET /health, bounded by `timeout_ms`. OK for 2xx.
  Status check_health(int64_t timeout_ms);
  // One turn. DeadlineExceeded when no answer came in `timeout_ms`.
  Result<AgentTurn> send_turn(const std::string& prompt, int64_t timeout_ms);

  // SIGTERM to the group, SIGKILL after `grace_ms`; blocks until it exited.
  void stop(int64_t grace_ms);
  // SIGKILL to the group now; does not wait. An HTTP call in flight fails.
  void kill_now();

  bool exited() const { return exited_.load(); }
  // Waits up to `ms` for the exit to be noticed; true when it has. A failed
  // call races the exit of a crashing agent, so callers wait a moment before
  // deciding how to describe the failure.
  bool wait_exit(int64_t ms);
  std::string describe_exit() const;
  // Steady-clock milliseconds of the last sign of life (spawn, output, answer).
  int64_t last_activity_ms() const { return last_activity_ms_.load(); }
  void touch();
  std::string output_tail() const;
  int port() const { return options_.port; }
  pid_t pid() const { return pid_; }

 private:
  explicit SubprocessAgent(Options options) : options_(std::move(options)) {}
  void drain_loop();
  // The drain thread: drain_loop(), and if it throws, reported as exited.
  void drain_loop_guarded();

  Options options_;
  std::unique_ptr<ChildProcess> child_;  // owned by the drain thread once started
  pid_t pid_ = -1;
  int wake_pipe_[2] = {-1, -1};          // stops the drain thread
  std::thread drain_thread_;
  std::atomic<bool> exited_{false};
  std::atomic<int64_t> last_activity_ms_{0};
  mutable std::mutex mu_;
  std::condition_variable exited_cv_;
  OutputTail tail_;
  std::string exit_text_;
};

// Steady-clock milliseconds (the activity clock).
int64_t steady_ms();

}  // namespace orch::server
