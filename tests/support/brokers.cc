// SPDX-License-Identifier: MIT
#include "support/brokers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace orch::testing {
namespace {

using namespace std::chrono_literals;

bool is_executable(const std::string& path) { return !path.empty() && access(path.c_str(), X_OK) == 0; }

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

bool accepts_connections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string make_temp_dir(const std::string& prefix) {
  std::string base = env_or("TMPDIR", "/tmp");
  std::string pattern = base + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
  return buf.data();
}

BrokerProcess::BrokerProcess(std::string name, std::string binary)
    : binary_(std::move(binary)), dir_(make_temp_dir("orch-" + name)), port_(free_loopback_port()),
      name_(std::move(name)) {}

BrokerProcess::~BrokerProcess() {
  stop(false);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void BrokerProcess::launch() { start(); }

void BrokerProcess::start() {
  if (pid_ > 0) return;
  if (binary_.empty()) throw std::runtime_error(name_ + " is not installed");
  std::vector<std::string> args = command();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log_path = dir_ + "/broker.log";
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no broker outlives a crashed test
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (accepts_connections(port_)) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error(name_ + " exited at start: " + log());
    }
    std::this_thread::sleep_for(10ms);
  }
  stop(false);
  throw std::runtime_error(name_ + " did not accept connections on port " + std::to_string(port_) + ": " + log());
}

void BrokerProcess::stop(bool graceful) {
  if (pid_ <= 0) return;
  ::kill(pid_, graceful ? SIGTERM : SIGKILL);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
}

std::string BrokerProcess::log() const {
  std::ifstream in(dir_ + "/broker.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- mosquitto ----

std::string MosquittoBroker::find_binary() {
  for (const std::string& p : {env_or("ORCH_MOSQUITTO", ""), std::string("/usr/sbin/mosquitto"),
                               std::string("/usr/local/sbin/mosquitto"), std::string("/usr/bin/mosquitto")}) {
    if (is_executable(p)) return p;
  }
  return "";
}

MosquittoBroker::MosquittoBroker() : BrokerProcess("mosquitto", find_binary()) {
  std::ofstream conf(dir_ + "/mosquitto.conf");
  conf << "listener " << port_ << " 127.0.0.1\n"
       << "allow_anonymous true\n"
       << "persistence true\n"
       << "persistence_location " << dir_ << "/\n"
       << "max_queued_messages 10000\n";
  // As root mosquitto would switch to the `mosquitto` user, which cannot
  // write the persistence file into our directory.
  if (::geteuid() == 0) conf << "user root\n";
  conf.close();
  launch();
}

MosquittoBroker::~MosquittoBroker() = default;

std::vector<std::string> MosquittoBroker::command() const { return {binary_, "-c", dir_ + "/mosquitto.conf"}; }

// ---- redis ----

std::string RedisBroker::find_binary() {
  for (const std::string& p : {env_or("ORCH_REDIS_SERVER", ""), std::string("/usr/bin/redis-server"),
                               std::string("/usr/local/bin/redis-server")}) {
    if (is_executable(p)) return p;
  }
  return "";
}

RedisBroker::RedisBroker() : BrokerProcess("redis", find_binary()) { launch(); }

RedisBroker::~RedisBroker() = default;

std::vector<std::string> RedisBroker::command() const {
  return {binary_, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
          "--dir", dir_, "--daemonize", "no"};
}

}  // namespace orch::testing
