// SPDX-License-Identifier: MIT
#include "engine/crash_guard.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>

namespace orch::internal {
namespace {

constexpr size_t kRunIdBytes = 300;  // ids longer than this are cut (and then not matched)
thread_local char t_run[kRunIdBytes] = {0};

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr size_t kSignalCount = sizeof(kSignals) / sizeof(kSignals[0]);
struct sigaction g_previous[kSignalCount];
std::atomic<int> g_log_fd{-1};
std::atomic<bool> g_installed{false};

// A stack for the handler, so that it still runs when the thread's own stack
// overflowed.
struct AltStack {
  AltStack() {
    stack_t ss{};
    ss.ss_size = kSize;
    ss.ss_sp = memory.get();
    installed = sigaltstack(&ss, nullptr) == 0;
  }
  ~AltStack() {
    if (!installed) return;
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
  }
  static constexpr size_t kSize = 64 * 1024;
  std::unique_ptr<char[]> memory{new char[kSize]};
  bool installed = false;
};

void on_fatal_signal(int sig, siginfo_t* info, void*) {
  // Only async-signal-safe calls here.
  const int fd = g_log_fd.load(std::memory_order_relaxed);
  const size_t n = strnlen(t_run, kRunIdBytes);
  if (fd >= 0 && n > 0) {
    char line[kRunIdBytes + 1];
    memcpy(line, t_run, n);
    line[n] = '\n';
    (void)!write(fd, line, n + 1);
  }
  for (size_t i = 0; i < kSignalCount; ++i) {
    if (kSignals[i] == sig) sigaction(sig, &g_previous[i], nullptr);
  }
  // A fault happens again when the instruction runs again, now reaching the
  // previous handler; a signal that was sent (raise, kill, abort) is sent again.
  if (info == nullptr || info->si_code <= 0) raise(sig);
}

}  // namespace

CurrentRun::CurrentRun(const std::string& run_id) {
  if (g_installed.load(std::memory_order_relaxed)) {
    thread_local AltStack alt_stack;
    (void)alt_stack;
  }
  static_assert(sizeof(saved_) == kRunIdBytes, "CurrentRun keeps what t_run holds");
  saved_size_ = strnlen(t_run, kRunIdBytes - 1);
  memcpy(saved_, t_run, saved_size_);
  const size_t n = std::min(run_id.size(), kRunIdBytes - 1);
  memcpy(t_run, run_id.data(), n);
  t_run[n] = '\0';
}

CurrentRun::~CurrentRun() {
  memcpy(t_run, saved_, saved_size_);
  t_run[saved_size_] = '\0';
}

Status install_crash_guard(const std::string& log_path) {
  int fd = open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::invalid_argument("cannot open crash log " + log_path + ": " + strerror(errno));
  int old = g_log_fd.exchange(fd);
  if (old >= 0) close(old);
  if (g_installed.exchange(true)) return Status();
  for (size_t i = 0; i < kSignalCount; ++i) {
    struct sigaction action {};
    action.sa_sigaction = on_fatal_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(kSignals[i], &action, &g_previous[i]);
  }
  return Status();
}

std::vector<std::string> take_crash_log(const std::string& log_path) {
  std::vector<std::string> runs;
  std::set<std::string> seen;
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && seen.insert(line).second) runs.push_back(line);
  }
  in.close();
  if (!runs.empty()) (void)!truncate(log_path.c_str(), 0);
  return runs;
}

}  // namespace orch::internal
