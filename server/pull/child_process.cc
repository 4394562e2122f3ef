// SPDX-License-Identifier: MIT
#include "pull/child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

extern char** environ;

namespace orch::server {
namespace {

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    (void)fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return static_cast<int>(fd);
  }
#else
  (void)pid;
#endif
  return -1;
}

// posix_spawn resources, released on every path.
struct SpawnResources {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool have_actions = false;
  bool have_attr = false;
  ~SpawnResources() {
    if (have_actions) posix_spawn_file_actions_destroy(&actions);
    if (have_attr) posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

void OutputTail::append(std::string_view text) {
  text_.append(text);
  if (text_.size() > limit_) text_.erase(0, text_.size() - limit_);
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) return Status::invalid_argument("no program to start");
  const std::string& program = options.argv[0];

  // The environment: `env`, and what the allow-list lets through of the parent's.
  std::map<std::string, std::string> overrides(options.env.begin(), options.env.end());
  auto allowed = [&options](const std::string& key) {
    for (const auto* list : {&kDefaultInheritedEnv, &options.inherit}) {
      for (const std::string& name : *list) {
        if (name == key) return true;
        if (!name.empty() && name.back() == '*' && key.compare(0, name.size() - 1, name, 0, name.size() - 1) == 0) {
          return true;
        }
      }
    }
    return false;
  };
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::string key(entry.substr(0, entry.find('=')));
    if (!overrides.count(key) && allowed(key)) env_strings.emplace_back(entry);
  }
  for (const auto& [k, v] : overrides) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = options.argv;
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::internal(std::string("pipe: ") + strerror(errno));
  SpawnResources res;
  posix_spawn_file_actions_init(&res.actions);
  res.have_actions = true;
  posix_spawnattr_init(&res.attr);
  res.have_attr = true;
  posix_spawn_file_actions_addopen(&res.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&res.actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&res.actions, pipe_fds[1], 2);
  // Nothing else of ours (listening sockets, other tasks' pipes) leaks into the child.
  posix_spawn_file_actions_addclosefrom_np(&res.actions, 3);
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&res.actions, options.cwd.c_str());
  // Own process group; signals the server ignores (SIGPIPE) or handles reset to default.
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setpgroup(&res.attr, 0);
  posix_spawnattr_setsigdefault(&res.attr, &defaults);
  posix_spawnattr_setsigmask(&res.attr, &empty);
  posix_spawnattr_setflags(&res.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), &res.actions, &res.attr, argv.data(), envp.data());
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    std::string why = strerror(rc);
    if (rc == ENOENT) {
      return Status::not_found("cannot start " + program + ": " + why +
                               (options.cwd.empty() ? "" : " (program, or working directory " + options.cwd + ")"));
    }
    return Status::invalid_argument("cannot start " + program + ": " + why);
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->out_fd_ = pipe_fds[0];
  (void)fcntl(child->out_fd_, F_SETFL, fcntl(child->out_fd_, F_GETFL) | O_NONBLOCK);
  child->pid_fd_ = open_pidfd(pid);
  return child;
}

ChildProcess::~ChildProcess() {
  if (!exited_) {
    signal_group(SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (pid_fd_ >= 0) close(pid_fd_);
}

void ChildProcess::signal_group(int sig) {
  // The group id is the child's pid (POSIX_SPAWN_SETPGROUP with 0). After the
  // leader is reaped the id could in theory be reused, so only the owner's
  // thread reaps and callers stop signalling once exited.
  if (pid_ > 0) (void)kill(-pid_, sig);
}

bool ChildProcess::try_reap() {
  if (exited_) return true;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return false;
  exited_ = true;
  if (WIFEXITED(status)) {
    exit_code_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    term_signal_ = WTERMSIG(status);
  }
  return true;
}

void ChildProcess::drain(const std::function<void(std::string_view)>& sink) {
  if (out_fd_ < 0) return;
  char buf[4096];
  for (;;) {
    ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n > 0) {
      if (sink) sink(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) {  // every writer closed the pipe
      close(out_fd_);
      out_fd_ = -1;
    }
    return;  // EAGAIN: nothing more for now
  }
}

bool ChildProcess::wait_until(std::chrono::steady_clock::time_point deadline,
                              const std::function<void(std::string_view)>& sink, int wake_fd) {
  for (;;) {
    drain(sink);
    if (try_reap()) {
      // Output written just before the exit is still in the pipe. Descendants
      // may hold the pipe open, so read what is there and do not wait for EOF.
      drain(sink);
      return true;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    int timeout = static_cast<int>(std::min<long long>(left, 1 << 30));
    if (pid_fd_ < 0) timeout = std::min(timeout, 20);  // no pidfd: notice the exit within 20 ms
    pollfd fds[3];
    nfds_t n = 0;
    if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
    if (pid_fd_ >= 0) fds[n++] = {pid_fd_, POLLIN, 0};
    int wake_index = -1;
    if (wake_fd >= 0) {
      wake_index = static_cast<int>(n);
      fds[n++] = {wake_fd, POLLIN, 0};
    }
    int rc = poll(fds, n, timeout);
    if (rc < 0 && errno != EINTR) return false;
    if (wake_index >= 0 && (fds[wake_index].revents & (POLLIN | POLLHUP))) return exited_;
  }
}

std::string ChildProcess::describe_exit() const {
  if (!exited_) return "still running";
  if (term_signal_) return "killed by signal " + std::to_string(term_signal_);
  return "exit status " + std::to_string(exit_code_);
}

}  // namespace orch::server
