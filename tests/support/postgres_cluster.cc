// SPDX-License-Identifier: MIT
// A private PostgreSQL server for tests (see postgres_cluster.h).
#include "support/postgres_cluster.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

namespace orch::testing {
namespace {

constexpr const char* kServerUser = "postgres";

// The bin dir holding initdb, pg_ctl, postgres and psql.
std::string find_bindir() {
  if (const char* env = std::getenv("ORCH_PG_BINDIR"); env != nullptr && *env != '\0') return env;
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(entry.path() / "bin" / "initdb")) found.push_back((entry.path() / "bin").string());
  }
  if (found.empty()) return "";
  // Newest version: "15" sorts after "14"; compare numerically.
  std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
    auto version = [](const std::string& p) { return std::atoi(std::filesystem::path(p).parent_path().filename().c_str()); };
    return version(a) < version(b);
  });
  return found.back();
}

bool running_as_root() { return ::geteuid() == 0; }

// Hands `path` to the server user (as root; otherwise it is ours already).
Status give_to_server_user(const std::string& path) {
  if (!running_as_root()) return Status();
  struct passwd* pw = ::getpwnam(kServerUser);
  if (pw == nullptr) {
    return Status::failed_precondition(std::string("no '") + kServerUser +
                                       "' user: PostgreSQL refuses to run as root and needs it (install Debian's "
                                       "postgresql package, or scripts/bootstrap.sh)");
  }
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return Status::internal("chown " + path + ": " + std::strerror(errno));
  }
  return Status();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

Result<std::string> PostgresCluster::run(std::vector<std::string> argv, bool as_server_user) {
  if (as_server_user && running_as_root()) argv.insert(argv.begin(), {"runuser", "-u", kServerUser, "--"});
  static std::atomic<int> counter{0};
  const std::string log = dir_ + "/command-" + std::to_string(counter++) + ".log";
  const pid_t pid = ::fork();
  if (pid < 0) return Status::internal(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The server user may not be allowed into our working directory (a
    // checkout under /root): run from the temp dir it owns.
    if (::chdir(dir_.c_str()) != 0) ::_exit(126);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::stringstream output;
  {
    std::ifstream in(log);
    output << in.rdbuf();
  }
  std::remove(log.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string command;
    for (const std::string& a : argv) command += (command.empty() ? "" : " ") + a;
    return Status::internal(command + " failed (status " + std::to_string(status) + "): " + output.str());
  }
  return output.str();
}

Result<std::unique_ptr<PostgresCluster>> PostgresCluster::start(const PostgresClusterOptions& options) {
  std::unique_ptr<PostgresCluster> cluster(new PostgresCluster());
  cluster->bindir_ = find_bindir();
  if (cluster->bindir_.empty()) {
    return Status::failed_precondition(
        "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin and ORCH_PG_BINDIR is not set: "
        "install Debian's postgresql package (scripts/bootstrap.sh does)");
  }
  std::string pattern = (std::filesystem::temp_directory_path() / "orch-pg-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) return Status::internal(std::string("mkdtemp: ") + std::strerror(errno));
  cluster->dir_ = pattern;
  cluster->data_dir_ = cluster->dir_ + "/data";
  cluster->database_ = options.database;
  ORCH_RETURN_IF_ERROR(give_to_server_user(cluster->dir_));

  // The watchdog: a shell waiting for our end of a pipe to close, which
  // happens when we close it or when this process dies in any way. It then
  // stops the server and removes the dir. Its own session: a Ctrl-C meant
  // for the tests does not kill it before it cleans up.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) == 0) {
    const std::string stop_cmd = (running_as_root() ? std::string("runuser -u postgres -- ") : std::string()) +
                                 shell_quote(cluster->bindir_ + "/pg_ctl") + " -D " + shell_quote(cluster->data_dir_) +
                                 " -m immediate -w stop";
    const std::string script = "cat >/dev/null; " + stop_cmd + " >/dev/null 2>&1; rm -rf " + shell_quote(cluster->dir_);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setsid();
      if (::chdir(cluster->dir_.c_str()) != 0) ::_exit(126);
      ::dup2(fds[0], STDIN_FILENO);
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) {
        ::dup2(devnull, STDOUT_FILENO);
        ::dup2(devnull, STDERR_FILENO);
      }
      ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[0]);
    cluster->watchdog_fd_ = fds[1];
  }

  ORCH_RETURN_IF_ERROR(cluster
                           ->run({cluster->bindir_ + "/initdb", "-D", cluster->data_dir_, "-U", kServerUser, "-A",
                                  "trust", "-E", "UTF8", "--locale=C", "--no-sync"},
                                 true)
                           .status());
  cluster->server_settings_ = {"listen_addresses=''", "max_connections=200", "unix_socket_permissions=0700"};
  if (!options.fsync) {
    cluster->server_settings_.push_back("fsync=off");
    cluster->server_settings_.push_back("full_page_writes=off");
  }
  for (const std::string& s : options.settings) cluster->server_settings_.push_back(s);
  ORCH_RETURN_IF_ERROR(cluster->restart());
  ORCH_RETURN_IF_ERROR(cluster->create_database(options.database));
  return cluster;
}

PostgresCluster::~PostgresCluster() {
  if (running_) (void)stop();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  if (watchdog_fd_ >= 0) ::close(watchdog_fd_);  // the watchdog finds nothing left to do
}

Status PostgresCluster::restart() {
  std::string server_options = "-k " + dir_ + " -p " + std::to_string(port_);
  for (const std::string& s : server_settings_) server_options += " -c " + s;
  ORCH_RETURN_IF_ERROR(
      run({bindir_ + "/pg_ctl", "-D", data_dir_, "-l", data_dir_ + "/server.log", "-o", server_options, "-w", "-t",
           "60", "start"},
          true)
          .status());
  running_ = true;
  return Status();
}

Status PostgresCluster::stop() {
  running_ = false;
  return run({bindir_ + "/pg_ctl", "-D", data_dir_, "-m", "fast", "-w", "-t", "60", "stop"}, true).status();
}

std::vector<int> PostgresCluster::server_pids() const {
  std::vector<int> pids;
  std::ifstream pid_file(data_dir_ + "/postmaster.pid");
  int postmaster = 0;
  if (!(pid_file >> postmaster) || postmaster <= 0) return pids;
  pids.push_back(postmaster);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    int ppid = 0;
    if (rest >> state >> ppid && ppid == postmaster) pids.push_back(std::atoi(name.c_str()));
  }
  return pids;
}

Status PostgresCluster::signal_server(int signal) {
  std::vector<int> pids = server_pids();
  if (pids.empty()) return Status::failed_precondition("the PostgreSQL server is not running");
  for (int pid : pids) ::kill(pid, signal);
  return Status();
}

Status PostgresCluster::freeze() { return signal_server(SIGSTOP); }
Status PostgresCluster::thaw() { return signal_server(SIGCONT); }

Result<std::string> PostgresCluster::psql(const std::string& sql, const std::string& database) {
  return run({bindir_ + "/psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", dir_, "-p",
              std::to_string(port_), "-U", kServerUser, "-d", database.empty() ? "postgres" : database, "-c", sql},
             false);
}

Status PostgresCluster::create_database(const std::string& name) {
  return psql("CREATE DATABASE \"" + name + "\"").status();
}

std::string PostgresCluster::conninfo(const std::string& database) const {
  return "host=" + dir_ + " port=" + std::to_string(port_) + " user=" + kServerUser +
         " dbname=" + (database.empty() ? database_ : database);
}

std::string PostgresCluster::uri(const std::string& database) const {
  return "postgresql:///" + (database.empty() ? database_ : database) + "?host=" + dir_ +
         "&port=" + std::to_string(port_) + "&user=" + kServerUser;
}

Result<PostgresCluster*> shared_postgres_cluster() {
  static std::mutex mu;
  static std::unique_ptr<PostgresCluster> cluster;
  static Status failure;
  std::lock_guard<std::mutex> lock(mu);
  if (cluster) return cluster.get();
  if (!failure.ok()) return failure;
  Result<std::unique_ptr<PostgresCluster>> started = PostgresCluster::start();
  if (!started.ok()) {
    failure = started.status();
    return failure;
  }
  cluster = std::move(started).value();
  return cluster.get();
}

}  // namespace orch::testing
