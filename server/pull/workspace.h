// SPDX-License-Identifier: MIT
//
// Pull-mode workspaces: one directory per NullTickets task under a root, and
// the lifecycle hooks run in it (after_create, before_run, after_run,
// before_remove).
//
// Confinement: a task id never becomes a path by itself. Ids that are path
// syntax ("..", anything with '/' or '\\', empty) are rejected; other
// characters outside [A-Za-z0-9._-] become '_' with a short hash of the id
// appended, so two ids never share a directory. The root is canonicalized
// once; a workspace must be a real directory directly inside it (a symlink
// planted in the root is refused, never followed), checked again after
// creation with realpath().
//
// Hooks run as `/bin/sh -c <snippet>` in the workspace, in their own process
// group, with the environment documented in docs/pull-mode.md (ORCH_TASK_ID,
// ORCH_WORKSPACE, ...). A hook that outlives its timeout is killed with its
// whole process group.
//
// Thread-safety: a WorkspaceManager may be used from several threads for
// different tasks at once.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "orch/status.h"

namespace orch::server {

class WorkspaceManager {
 public:
  explicit WorkspaceManager(std::string root) : configured_root_(std::move(root)) {}

  // Creates the root (and parents; the root itself 0700) and canonicalizes
  // it. A root that another user owns, or that others may write to, is
  // refused: orch deletes workspaces in it.
  Status init();
  // The marker file orch leaves in each workspace it creates: only those are
  // ever deleted.
  static constexpr const char* kMarker = ".orch-workspace";
  // The canonical root (after init()).
  const std::string& root() const { return root_; }

  // The directory name for `task_id`, or InvalidArgument when the id is path
  // syntax. Pure: no file system access.
  static Result<std::string> dir_name_for(const std::string& task_id);

  struct Workspace {
    std::string path;
    bool fresh = false;  // created now, or found empty: after_create runs
  };
  // Creates (or reuses) the workspace of `task_id`. InvalidArgument for an id
  // or a path that would leave the root.
  Result<Workspace> prepare(const std::string& task_id);
  // Deletes a workspace that prepare() created (it holds kMarker); leaves
  // any other directory alone. Refuses a path outside the root.
  Status remove(const std::string& path);
  // Deletes the workspaces a previous process created (kMarker) and left in
  // the root; nothing else. Returns how many.
  size_t remove_stale();

 private:
  std::string configured_root_;
  std::string root_;
};

struct HookResult {
  bool ok = true;          // exit status 0 (or no hook configured)
  bool timed_out = false;
  int exit_code = 0;       // -1 when killed by a signal
  std::string output;      // the last 4 KiB of stdout+stderr
  // "hook before_run timed out after 100 ms", "hook after_create failed (exit status 3): ..."
  std::string error;
};

// Runs `script` with /bin/sh -c in `cwd`. Empty script: ok, nothing runs.
// The environment is `env` plus the allow-listed variables of orch's own
// (SpawnOptions::inherit: kDefaultInheritedEnv and `inherit`).
HookResult run_hook(const std::string& name, const std::string& script, const std::string& cwd,
                    const std::vector<std::pair<std::string, std::string>>& env, int64_t timeout_ms,
                    const std::vector<std::string>& inherit = {});

}  // namespace orch::server
