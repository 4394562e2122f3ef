// SPDX-License-Identifier: MIT
//
// The workflows and prompts of pull-mode tasks: the graph a `dispatch`
// pipeline runs on the server's engine (its own, a stored one, or a single
// task node from a NullBoiler dispatch file), the one-node graph of a
// `subprocess` pipeline, and prompts rendered with the task in context.
//
// Owns nothing: results are new workflows and strings.
//
// Thread-safety: free functions; render_for_task takes TaskBoard::mu itself
// (briefly, to copy the task) and must be called without it.
#pragma once

#include <memory>
#include <string>

#include "orch/status.h"
#include "orch/store.h"
#include "orch/template.h"
#include "orch/workflow.h"
#include "pull/tracked_task.h"
#include "pull/tracker_config.h"

namespace orch::server {

// The tag of the one node of a subprocess run; only the tracker's own engine
// serves it (after a restart the server's engine fails such a run, clearly).
inline constexpr char kAgentTag[] = "orch:subprocess";

// The server's engine renders prompts without a pull-mode task in its
// template context, but the task is in the run's config: `task.x` inside
// template tags becomes `config.task.x`, so {{task.title}} works in dispatch
// workflows exactly as in subprocess prompts.
std::string rewrite_task_refs(const std::string& text);

// The graph of a `dispatch` pipeline; `store` holds workflows named by id.
Result<std::shared_ptr<const Workflow>> dispatch_workflow(const PipelineDef& def, Store& store);
// The one-node graph of a `subprocess` pipeline, its deadline covering the
// whole agent (health checks and every turn).
Result<std::shared_ptr<const Workflow>> agent_workflow(const PipelineDef& def, const TrackerConfig& cfg);

// Renders `tpl` with the task, its attempt and run config in context (and
// `state`, when given).
Result<std::string> render_for_task(TaskBoard& board, const TrackedTask& t, const Template& tpl, const Value* state);

}  // namespace orch::server
