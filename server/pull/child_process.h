// SPDX-License-Identifier: MIT
//
// ChildProcess: a program started in its own process group with stdout and
// stderr on one pipe, for workspace hooks and subprocess agents (pull mode).
//
// Why a process group: hooks are shell snippets and agents start helpers of
// their own; killing only the direct child would leave those running (and
// holding our pipe open). Killing the group takes them all.
//
// Waiting never busy-polls: the exit is watched through a pidfd (Linux 5.3+)
// together with the output pipe in one poll(2); on kernels without pidfd it
// falls back to a 20 ms poll slice.
//
// Thread-safety: signal_group() may be called from any thread; the other
// methods from one thread at a time (the owner).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orch/status.h"

namespace orch::server {

// Names of the parent's environment a child always gets; "LC_*" is a prefix.
inline const std::vector<std::string> kDefaultInheritedEnv = {"PATH", "HOME",   "USER",   "LOGNAME", "SHELL", "LANG",
                                                              "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM"};

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up on PATH when it has no '/'
  // The child's environment: `env`, plus the variables of the parent's that
  // kDefaultInheritedEnv or `inherit` names (an agent or a hook must not see
  // the server's secrets, e.g. ORCH_API_TOKEN or a cloud key in its env).
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> inherit;
  std::string cwd;                // empty: the parent's
};

class ChildProcess {
 public:
  // Starts the program. InvalidArgument / NotFound when it cannot be started
  // (no such program, cwd missing); the message names the program.
  static Result<std::unique_ptr<ChildProcess>> spawn(const SpawnOptions& options);

  // Kills the whole group if it still runs, and reaps the child.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Waits until the child exits, `deadline` passes or `wake_fd` (if >= 0)
  // becomes readable, handing output to `sink` as it arrives. Returns true
  // when the child has exited.
  bool wait_until(std::chrono::steady_clock::time_point deadline,
                  const std::function<void(std::string_view)>& sink, int wake_fd = -1);

  bool exited() const { return exited_; }
  // Exit code, or -1 when killed by a signal (see term_signal()).
  int exit_code() const { return exit_code_; }
  int term_signal() const { return term_signal_; }
  // "exit status 3", "killed by signal 9".
  std::string describe_exit() const;

  // Sends `sig` to every process of the group (harmless after the exit).
  void signal_group(int sig);

 private:
  ChildProcess() = default;
  bool try_reap();
  void drain(const std::function<void(std::string_view)>& sink);

  pid_t pid_ = -1;
  int out_fd_ = -1;   // read end of the stdout+stderr pipe (non-blocking)
  int pid_fd_ = -1;   // pidfd, or -1
  bool exited_ = false;
  int exit_code_ = -1;
  int term_signal_ = 0;
};

// The tail of a stream of output, bounded, for error messages.
class OutputTail {
 public:
  explicit OutputTail(size_t limit = 4096) : limit_(limit) {}
  void append(std::string_view text);
  const std::string& text() const { return text_; }

 private:
  size_t limit_;
  std::string text_;
};

}  // namespace orch::server
