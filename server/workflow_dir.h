// SPDX-License-Identifier: MIT
//
// WorkflowDirWatcher: loads every *.json workflow of a directory into the
// store (id = the file's "id", else its name without .json) and reloads a file
// when it changes, woken by inotify (no polling).
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "app.h"

namespace orch::server {

class WorkflowDirWatcher {
 public:
  WorkflowDirWatcher(App& app, std::string dir) : app_(app), dir_(std::move(dir)) {}
  ~WorkflowDirWatcher() { stop(); }

  // Loads the directory now and starts watching it. FailedPrecondition when
  // the directory does not exist.
  Status start();
  void stop();
  // Loads (or reloads) one file; InvalidArgument when it is not a workflow.
  Status load_file(const std::string& path);

 private:
  void watch_loop();

  App& app_;
  std::string dir_;
  int inotify_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace orch::server
