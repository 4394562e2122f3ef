// SPDX-License-Identifier: MIT
#include "pull/workspace.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "private_files.h"
#include "pull/child_process.h"

namespace orch::server {
namespace {

namespace fs = std::filesystem;

bool safe_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

// FNV-1a: stable across runs and platforms (std::hash is not), for name suffixes.
std::string short_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 8);
}

Result<std::string> real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!realpath(path.c_str(), buf)) return Status::not_found("cannot resolve " + path + ": " + strerror(errno));
  return std::string(buf);
}

}  // namespace

Status WorkspaceManager::init() {
  std::error_code ec;
  const bool existed = fs::exists(configured_root_, ec);
  fs::path parent = fs::path(configured_root_).parent_path();
  if (!parent.empty()) (void)make_private_dirs(parent.string());
  if (!existed && mkdir(configured_root_.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::invalid_argument("cannot create workspace root " + configured_root_ + ": " + strerror(errno));
  }
  ORCH_ASSIGN_OR_RETURN(root_, real_path(configured_root_));
  struct stat st;
  if (stat(root_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::invalid_argument("workspace root " + configured_root_ + " is not a directory");
  }
  if (st.st_uid != geteuid()) {
    return Status::invalid_argument("workspace root " + root_ + " belongs to another user (uid " +
                                    std::to_string(st.st_uid) + "); orch deletes workspaces there, so it must own it");
  }
  if (st.st_mode & S_IWOTH) {
    return Status::invalid_argument("workspace root " + root_ +
                                    " is writable by other users; make it 0700 (chmod go-w) or choose another root");
  }
  return Status();
}

Result<std::string> WorkspaceManager::dir_name_for(const std::string& task_id) {
  if (task_id.empty() || task_id == "." || task_id == ".." || task_id.find('/') != std::string::npos ||
      task_id.find('\\') != std::string::npos || task_id.find('\0') != std::string::npos) {
    return Status::invalid_argument("task id '" + task_id + "' cannot name a workspace (path syntax)");
  }
  std::string name;
  bool changed = false;
  for (char c : task_id) {
    name += safe_char(c) ? c : '_';
    changed |= !safe_char(c);
  }
  // No hidden or dot-dot-like names, and a bounded length.
  if (name[0] == '.') {
    name[0] = '_';
    changed = true;
  }
  if (name.size() > 96) {
    name.resize(96);
    changed = true;
  }
  if (changed) name += "-" + short_hash(task_id);
  return name;
}

Result<WorkspaceManager::Workspace> WorkspaceManager::prepare(const std::string& task_id) {
  if (root_.empty()) return Status::failed_precondition("workspace root not initialized");
  ORCH_ASSIGN_OR_RETURN(std::string name, dir_name_for(task_id));
  const std::string path = root_ + "/" + name;
  Workspace ws;
  ws.path = path;
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      return Status::invalid_argument("workspace " + path + " is a symlink; refusing to use it");
    }
    if (!S_ISDIR(st.st_mode)) return Status::invalid_argument("workspace " + path + " exists and is not a directory");
    std::error_code ec;
    ws.fresh = fs::is_empty(path, ec);
  } else {
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::internal("cannot create workspace " + path + ": " + strerror(errno));
    }
    // Only what carries the marker is ever deleted (remove, remove_stale).
    (void)create_private_file(path + "/" + kMarker);
    ws.fresh = true;
  }
  // Belt and braces: whatever happened in between, the directory must
  // resolve to itself, directly inside the root.
  ORCH_ASSIGN_OR_RETURN(std::string resolved, real_path(path));
  if (resolved != path) {
    return Status::invalid_argument("workspace " + path + " resolves to " + resolved + ", outside the workspace root");
  }
  return ws;
}

Status WorkspaceManager::remove(const std::string& path) {
  if (root_.empty() || fs::path(path).parent_path().string() != root_ ||
      fs::path(path).filename().string().empty() || fs::path(path).filename() == "..") {
    return Status::invalid_argument("refusing to remove " + path + ": not a workspace under " + root_);
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return Status();  // already gone
  if (!S_ISDIR(st.st_mode)) return Status();            // a link or a file: not orch's to delete
  struct stat marker;
  if (lstat((path + "/" + kMarker).c_str(), &marker) != 0 || !S_ISREG(marker.st_mode)) {
    return Status();  // a directory orch did not create: left alone
  }
  std::error_code ec;
  fs::remove_all(path, ec);  // does not follow symlinks inside
  if (ec) return Status::internal("cannot remove workspace " + path + ": " + ec.message());
  return Status();
}

size_t WorkspaceManager::remove_stale() {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    if (entry.is_symlink(ec) || !entry.is_directory(ec)) continue;
    std::error_code exists_ec;
    if (!fs::exists(entry.path() / kMarker, exists_ec)) continue;
    if (remove(entry.path().string()).ok()) ++removed;
  }
  return removed;
}

HookResult run_hook(const std::string& name, const std::string& script, const std::string& cwd,
                    const std::vector<std::pair<std::string, std::string>>& env, int64_t timeout_ms,
                    const std::vector<std::string>& inherit) {
  HookResult result;
  if (script.empty()) return result;
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", script};
  options.env = env;
  options.inherit = inherit;
  options.env.emplace_back("ORCH_HOOK", name);
  options.cwd = cwd;
  auto child = ChildProcess::spawn(options);
  if (!child.ok()) {
    result.ok = false;
    result.exit_code = -1;
    result.error = "hook " + name + " could not start: " + child.status().message();
    return result;
  }
  OutputTail tail;
  auto sink = [&tail](std::string_view text) { tail.append(text); };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (!(*child)->wait_until(deadline, sink)) {
    // The snippet and everything it started go: a hook must not outlive its budget.
    (*child)->signal_group(SIGKILL);
    (*child)->wait_until(std::chrono::steady_clock::now() + std::chrono::seconds(5), sink);
    result.ok = false;
    result.timed_out = true;
    result.exit_code = -1;
    result.output = tail.text();
    result.error = "hook " + name + " timed out after " + std::to_string(timeout_ms) + " ms";
    return result;
  }
  result.exit_code = (*child)->exit_code();
  result.output = tail.text();
  if ((*child)->exit_code() != 0) {
    result.ok = false;
    result.error = "hook " + name + " failed (" + (*child)->describe_exit() + ")";
    std::string out = result.output;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    if (out.size() > 300) out = "..." + out.substr(out.size() - 300);
    if (!out.empty()) result.error += ": " + out;
  }
  return result;
}

}  // namespace orch::server
