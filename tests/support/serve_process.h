// SPDX-License-Identifier: MIT
//
// `orch serve` as a child process, for tests that kill it (SIGKILL) and start
// it again on the same database: server_restart_test, serve_soak_test.
//
// The child inherits no descriptors but stdin (/dev/null), stdout and stderr
// (a log file, appended to so the output of every start stays, or
// /dev/null). The destructor SIGKILLs and reaps a child that is still
// running, so no exit path of a test (a failed REQUIRE, an exception) leaves
// one behind; a test process that dies takes the child with it
// (PR_SET_PDEATHSIG, tied to the thread that called start()).
//
// Thread-safety: one thread drives a ServeProcess; other threads may talk to
// the server over HTTP meanwhile.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace orch::testing {

// A free port on 127.0.0.1 below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so that no outgoing connection is given it
// as its local port while the server is down between a kill and a restart.
// Falls back to free_loopback_port() (support/brokers.h) when there is no
// room below the range.
int free_loopback_port_for_restarts();

class ServeProcess {
 public:
  // `binary`: the orch program. `log`: file for the child's output ("" for /dev/null).
  ServeProcess(std::string binary, int port, std::string db, std::string config,
               std::string log = "");
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  // Starts `orch serve --port P --db D --config C` and waits until GET /health
  // answers 200. False when the child exits first or `timeout` passes (the
  // child is killed then). Requires: not running.
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // SIGKILL, then reaps the child. No-op when not running.
  void kill_hard();
  // SIGTERM, then waits up to `timeout` for the exit (SIGKILL after that).
  // Returns the wait status (see waitpid), or -1 when it had to be killed or
  // was not running.
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // False once the child has exited by itself (it is reaped then; exit_status()
  // tells how). Does not wait.
  bool alive();
  int exit_status() const { return exit_status_; }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  // The last lines of the log file (or "" without one), for failure messages.
  std::string log_tail(size_t max_bytes = 4000) const;

 private:
  std::string binary_;
  int port_;
  std::string db_;
  std::string config_;
  std::string log_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
};

}  // namespace orch::testing
