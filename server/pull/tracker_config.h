// SPDX-License-Identifier: MIT
//
// Pull-mode settings: the `tracker` block of the config file and the pipeline
// workflow files (one per NullTickets pipeline) found in tracker.workflows_dir
// or inline in tracker.pipelines. Both are parsed strictly: an unknown key, a
// value of the wrong type or a limit out of range is InvalidArgument naming
// the key ("tracker.concurrency.per_role.coder: expected a non-negative
// integer"), so a typo stops start-up instead of being ignored.
//
// Keys and defaults are NullBoiler's (reference/nullboiler-api.md §1.3, §8.1);
// orch adds a few optional ones, each documented in docs/pull-mode.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orch/status.h"
#include "orch/template.h"
#include "orch/value.h"

namespace orch::server {

struct TrackerHooks {
  std::string after_create;   // a fresh workspace was created
  std::string before_run;     // before each attempt
  std::string after_run;      // after each attempt, success or not
  std::string before_remove;  // before the workspace is deleted
};

struct TrackerConfig {
  std::string url;                     // NullTickets base URL; empty: pull mode off
  std::string api_token;               // bearer for claim, task reads
  int64_t poll_interval_ms = 10000;
  std::string agent_id = "nullboiler";
  // concurrency
  int64_t max_concurrent_tasks = 10;
  std::map<std::string, int64_t> per_pipeline;
  std::map<std::string, int64_t> per_role;
  std::map<std::string, int64_t> per_state;
  // workspace
  // Default: $ORCH_HOME/workspaces, else $HOME/.orch/workspaces (not a
  // predictable path under /tmp that another user could create first).
  std::string workspace_root;
  TrackerHooks hooks;
  int64_t hook_timeout_ms = 30000;
  // subprocess agents
  std::string command = "nullclaw";
  // Variables of orch's environment that agents and hooks also get, beyond
  // PATH, HOME, LANG and the like (subprocess.inherit_env; "X_*" a prefix).
  std::vector<std::string> inherit_env;
  std::vector<std::string> args = {"gateway"};
  int64_t base_port = 9200;
  int64_t health_check_retries = 10;
  int64_t health_check_interval_ms = 500;  // orch: pause between health probes
  int64_t max_turns = 20;
  int64_t turn_timeout_ms = 600000;
  std::string continuation_prompt = "Continue working on this task. Your previous context is preserved.";
  // leases and liveness
  int64_t stall_timeout_ms = 300000;
  int64_t lease_ttl_ms = 60000;
  int64_t heartbeat_interval_ms = 30000;
  int64_t http_timeout_ms = 10000;     // orch: every call to NullTickets
  // Stages that end a task: a task reaching one upstream cancels its run.
  // A stage without available transitions counts as terminal too.
  std::vector<std::string> terminal_stages = {"done", "cancelled", "canceled"};
  std::string workflows_dir = "workflows";
  Value pipelines = Value::array();    // orch: inline pipeline workflow objects
};

// One pull-mode pipeline workflow (NullBoiler's WorkflowDef plus orch keys).
struct PipelineDef {
  std::string source;                  // file name or "tracker.pipelines[i]", for messages
  std::string id;
  std::string pipeline_id;
  std::vector<std::string> claim_roles;
  std::string execution = "subprocess";  // or "dispatch"
  // subprocess: empty / unset fall back to the tracker's subprocess block
  std::string command;
  std::optional<std::vector<std::string>> args;
  std::optional<int64_t> max_turns;
  std::optional<int64_t> turn_timeout_ms;
  std::optional<std::string> continuation_prompt;
  // dispatch
  std::vector<std::string> worker_tags;
  std::string protocol = "webhook";    // accepted for NullBoiler files; selection is by tags
  std::string workflow_id;             // orch: a stored graph workflow to run
  Value workflow;                      // orch: an inline graph workflow (null when absent)
  std::optional<std::string> prompt_template;
  std::string success_trigger;         // on_success.transition_to ("" = auto)
  std::string failure_trigger = "failed";  // on_failure.transition_to (used when it is a valid trigger)
  bool retry_on_failure = false;       // on_failure.retry
  int64_t retry_max_attempts = 3;
  int64_t retry_backoff_base_ms = 10000;
  int64_t retry_backoff_max_ms = 300000;

  // Compiled at parse time so template errors stop start-up.
  std::shared_ptr<const Template> prompt;
  std::shared_ptr<const Template> continuation;  // null: the tracker's default
};

// `tracker` is the raw block (an object). Relative workspace.root and
// workflows_dir are anchored to `base_dir` (the config file's directory) as
// NullBoiler does. The url may be null (pull mode off: url stays empty).
Result<TrackerConfig> parse_tracker_config(const Value& tracker, const std::string& base_dir);

// Parses one pipeline workflow object; `source` names it in messages.
Result<PipelineDef> parse_pipeline_def(const Value& doc, const std::string& source);

// Every pipeline workflow of `config`: the *.json files of workflows_dir that
// carry a `pipeline_id` (others are graph workflows and are skipped; a missing
// directory is no error), then tracker.pipelines. Later definitions of a
// pipeline_id replace earlier ones, as in NullBoiler.
Result<std::vector<PipelineDef>> load_pipeline_defs(const TrackerConfig& config);

}  // namespace orch::server
