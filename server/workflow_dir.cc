// SPDX-License-Identifier: MIT
#include "workflow_dir.h"

#include "log/log.h"

#include "orch/thread_guard.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace orch::server {

Status WorkflowDirWatcher::load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = parse_json(ss.str());
  if (!doc.ok()) return Status::invalid_argument(path + ": " + doc.status().message());
  if (!doc->is_object() || !(*doc)["nodes"].is_object()) {
    return Status::invalid_argument(path + ": not a graph workflow (no 'nodes' object)");
  }
  WorkflowRecord w;
  w.id = (*doc)["id"].get_string(std::filesystem::path(path).stem().string());
  w.name = (*doc)["name"].get_string(w.id);
  w.version = (*doc)["version"].get_int(1);
  w.definition = *doc;
  w.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  auto existing = app_.store->get_workflow(w.id);
  w.created_at_ms = existing.ok() ? existing->created_at_ms : w.updated_at_ms;
  if (existing.ok() && existing->definition == w.definition) return Status();
  return app_.store->put_workflow(w, false);
}

Status WorkflowDirWatcher::start() {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir_, ec)) {
    return Status::failed_precondition("workflows directory " + dir_ + " does not exist");
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != ".json") continue;
    Status s = load_file(entry.path().string());
    if (!s.ok()) log(LogLevel::kWarn, "workflow.skipped", {{"error", s.message()}});
  }
  inotify_fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd_ < 0 || pipe(stop_pipe_) != 0) return Status::internal("cannot watch " + dir_);
  if (inotify_add_watch(inotify_fd_, dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    return Status::internal("cannot watch " + dir_);
  }
  thread_ = std::thread([this] { watch_loop(); });
  return Status();
}

void WorkflowDirWatcher::stop() {
  if (thread_.joinable()) {
    char b = 1;
    (void)!write(stop_pipe_[1], &b, 1);
    thread_.join();
  }
  for (int* fd : {&inotify_fd_, &stop_pipe_[0], &stop_pipe_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void WorkflowDirWatcher::watch_loop() {
  alignas(struct inotify_event) char buf[8192];
  for (;;) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    ssize_t n = read(inotify_fd_, buf, sizeof(buf));
    for (ssize_t i = 0; i < n;) {
      auto* ev = reinterpret_cast<inotify_event*>(buf + i);
      std::string name = ev->len ? ev->name : "";
      if (name.size() > 5 && name.substr(name.size() - 5) == ".json") {
        run_guarded("workflow reload", [&] {
          Status s = load_file(dir_ + "/" + name);
          if (!s.ok()) log(LogLevel::kWarn, "workflow.reload_failed", {{"error", s.message()}});
        });
      }
      i += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
}

}  // namespace orch::server
