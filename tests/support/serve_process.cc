// SPDX-License-Identifier: MIT
#include "support/serve_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "support/brokers.h"

namespace orch::testing {
namespace {

using namespace std::chrono_literals;

// True when 127.0.0.1:`port` can be bound right now.
bool can_bind_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

int free_loopback_port_for_restarts() {
  int low = 0;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low;
  constexpr int kFloor = 10000;
  if (low > kFloor + 1000) {
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pick(kFloor, low - 1);
    for (int attempt = 0; attempt < 200; ++attempt) {
      int port = pick(rng);
      if (can_bind_loopback(port)) return port;
    }
  }
  return free_loopback_port();
}

ServeProcess::ServeProcess(std::string binary, int port, std::string db, std::string config,
                           std::string log)
    : binary_(std::move(binary)),
      port_(port),
      db_(std::move(db)),
      config_(std::move(config)),
      log_(std::move(log)) {}

ServeProcess::~ServeProcess() { kill_hard(); }

bool ServeProcess::start(std::chrono::milliseconds timeout) {
  if (pid_ > 0) return false;
  // Everything the child needs is prepared before fork(): between fork and
  // exec a child of a multi-threaded process may only make async-signal-safe calls.
  const std::string port = std::to_string(port_);
  std::vector<const char*> argv = {binary_.c_str(), "serve",         "--port",
                                   port.c_str(),    "--db",          db_.c_str(),
                                   "--config",      config_.c_str(), nullptr};
  const char* out = log_.empty() ? "/dev/null" : log_.c_str();
  long max_fd = sysconf(_SC_OPEN_MAX);
  if (max_fd < 0 || max_fd > 65536) max_fd = 65536;
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // no server outlives a crashed test
    int in = open("/dev/null", O_RDONLY);
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) dup2(in, STDIN_FILENO);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    // Test sockets (fake workers, clients) are not close-on-exec; the server
    // must not hold them.
    bool closed = false;
#ifdef SYS_close_range
    closed = syscall(SYS_close_range, 3U, ~0U, 0) == 0;
#endif
    if (!closed) {
      for (long i = 3; i < max_fd; ++i) close(static_cast<int>(i));
    }
    execv(argv[0], const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  pid_ = pid;
  httplib::Client client("127.0.0.1", port_);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(5, 0);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!alive()) return false;  // exited (e.g. could not bind the port)
    auto r = client.Get("/health");
    if (r && r->status == 200) return true;
    std::this_thread::sleep_for(10ms);
  }
  kill_hard();
  return false;
}

bool ServeProcess::alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
  exit_status_ = status;
  pid_ = -1;
  return false;
}

void ServeProcess::kill_hard() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int ServeProcess::terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!alive()) return exit_status_;
    std::this_thread::sleep_for(10ms);
  }
  kill_hard();
  return -1;
}

std::string ServeProcess::log_tail(size_t max_bytes) const {
  if (log_.empty()) return "";
  std::ifstream in(log_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > max_bytes ? text.substr(text.size() - max_bytes) : text;
}

}  // namespace orch::testing
