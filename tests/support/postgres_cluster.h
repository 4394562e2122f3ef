// SPDX-License-Identifier: MIT
//
// A private PostgreSQL server for tests and benchmarks: initdb in a fresh
// temp dir, `postgres` listening only on a Unix socket in that dir (so it
// never meets a system cluster, whatever port that one uses), one database
// created. Destroying the cluster stops the server and removes the dir; a
// watchdog process does the same if the test program dies without running
// destructors (a crash, SIGKILL).
//
// PostgreSQL refuses to run as root: as root, initdb, pg_ctl and postgres
// run as the `postgres` system user (Debian's package creates it) through
// runuser, and the temp dir is handed to that user.
//
// Binaries: $ORCH_PG_BINDIR, else the newest /usr/lib/postgresql/<v>/bin.
// When none is found, start() fails with a message saying what to install:
// tests must fail then, not skip.
//
// Thread-safety: one thread drives a cluster; the conninfo strings may be
// used anywhere.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "orch/status.h"

namespace orch::testing {

struct PostgresClusterOptions {
  // The database start() creates.
  std::string database = "orch";
  // fsync off makes a test cluster faster; the benchmark keeps it on. Either
  // way a client crash loses nothing committed (only a server or power
  // failure would, with fsync off).
  bool fsync = false;
  // More `-c name=value` settings for the server.
  std::vector<std::string> settings;
};

class PostgresCluster {
 public:
  static Result<std::unique_ptr<PostgresCluster>> start(const PostgresClusterOptions& options = {});
  ~PostgresCluster();
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  // libpq key/value conninfo for `database` (default: the options' one).
  std::string conninfo(const std::string& database = "") const;
  // The same as a URI: postgresql:///db?host=SOCKETDIR&port=N&user=postgres.
  std::string uri(const std::string& database = "") const;
  const std::string& socket_dir() const { return dir_; }

  Status create_database(const std::string& name);
  // Stops the server (fast shutdown: clients are disconnected), and starts it
  // again on the same data and socket.
  Status stop();
  Status restart();
  // Stops every server process with SIGSTOP (a server that accepts
  // connections but never answers), and lets them go on.
  Status freeze();
  Status thaw();
  // Runs `sql` through psql as the superuser; its output.
  Result<std::string> psql(const std::string& sql, const std::string& database = "");

 private:
  PostgresCluster() = default;
  // Runs `argv` (as the postgres user when we are root); its output.
  Result<std::string> run(std::vector<std::string> argv, bool as_server_user);
  // The postmaster and its children (backends, background processes).
  std::vector<int> server_pids() const;
  Status signal_server(int signal);

  std::string bindir_;
  std::string dir_;       // temp dir: the socket lives here
  std::string data_dir_;  // dir_/data
  std::string database_;
  int port_ = 5432;
  std::vector<std::string> server_settings_;
  bool running_ = false;
  int watchdog_fd_ = -1;  // closing it (or our death) makes the watchdog clean up
};

// One cluster per test program, started on first use (startup costs ~2 s),
// stopped at exit. A failure to start is remembered and returned each time.
Result<PostgresCluster*> shared_postgres_cluster();

}  // namespace orch::testing
