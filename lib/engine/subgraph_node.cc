// SPDX-License-Identifier: MIT
//
// A subgraph node: it starts a child run of another workflow and waits for
// it. The child's input is the node's input_mapping over the parent's state;
// its value at output_key is the node's result; a child that pauses pauses
// the parent (resuming the parent resumes it), one that fails or is
// cancelled fails the node. prepare_child_run is shared with a send whose
// target is a subgraph node (send_children.cc). Every entry point runs with
// the run's lock held except tell_parent, which takes the parent's.
#include "engine/engine_impl.h"
#include "orch/event_kinds.h"
#include "orch/id.h"
#include "orch/state_path.h"

namespace orch::internal {

Result<EngineImpl::ChildRunStart> EngineImpl::prepare_child_run(RunContext& c, size_t index, const Node& target) {
  constexpr int kMaxDepth = 10;
  const std::string root = c.root_run_id.empty() ? c.record.id : c.root_run_id;
  if (c.depth + 1 > kMaxDepth) return Status::failed_precondition("subgraph max recursion depth of 10 exceeded");
  if (target.subgraph.workflow_id.empty()) return Status::invalid_argument("subgraph missing workflow_id");
  if (!take_descendant(root)) {
    return Status::resource_exhausted("subgraph not started: run " + root + " already started " +
                                      std::to_string(options_.max_descendant_runs) +
                                      " subgraph runs (max_descendant_runs)");
  }
  auto workflow = resolve_workflow(target.subgraph.workflow_id);
  if (!workflow.ok()) {
    return Status::not_found("subgraph workflow '" + target.subgraph.workflow_id +
                             "' not found: " + workflow.status().message());
  }
  ChildRunStart start;
  start.workflow = std::move(*workflow);
  RunOptions& options = start.options;
  options.input = Value::object();
  for (const auto& [child_key, parent_path] : target.subgraph.input_mapping) {
    if (const Value* v = find_state_path(c.state, parent_path)) options.input.set(child_key, *v);
  }
  options.config = c.record.config;  // children share the run's config
  options.workflow_id = target.subgraph.workflow_id;
  if (c.trace) options.traceparent = c.trace->node_traceparent(index);  // the child's run span is under this node's
  return start;
}

void EngineImpl::start_subgraph(const std::shared_ptr<RunContext>& ctx, size_t index) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& node = *c.compiled->graph->node(t.vertex);
  auto prepared = prepare_child_run(c, index, node);
  if (!prepared.ok()) {
    complete_task(ctx, index, NodeOutcome::failure(prepared.status().message()), true);
    return;
  }
  RunOptions opts = std::move(prepared->options);
  t.waiting_child = true;
  // A run loaded while this node's child was running (a takeover, a
  // restart) continues that child instead of starting another.
  const bool resuming_child = !t.child_run_id.empty();
  if (!resuming_child) t.child_run_id = new_uuid();
  StepRecord step;  // running while the child runs; finish_step_record closes it
  step.id = t.step_id;
  step.run_id = c.record.id;
  step.node_name = node.name;
  step.type = std::string(node_type_name(node.type));
  step.status = StepStatus::kRunning;
  step.superstep = c.version + 1;
  step.child_run_id = t.child_run_id;
  step.created_at_ms = step.started_at_ms = t.started_ms;
  write_step(c, std::move(step));
  t.has_step_record = true;
  // The child's id is known before it starts, so when it stops notify_parent()
  // always finds the task waiting for it. It is started off this lock: its
  // first events may call back here.
  opts.run_id = t.child_run_id;
  // The step's record (naming the child) is stored before the child starts,
  // as a worker call's is before it goes out: whoever loads this run next (a
  // restart, a takeover) continues that child instead of starting another.
  (void)flush(c);
  if (is_terminal(c.record.status)) return;  // the flush failed the run (or lost it)
  std::weak_ptr<RunContext> weak = ctx;
  const uint64_t gen = c.generation;
  std::string parent_id = c.record.id;
  int depth = c.depth + 1;
  std::string root = c.root_run_id.empty() ? c.record.id : c.root_run_id;
  post([this, weak, gen, index, wf = std::move(prepared->workflow), opts, parent_id, name = node.name, depth, root, resuming_child]() mutable {
    ChildLaunch launch{weak, gen, index, -1, parent_id, name, depth, root};
    Status started = launch_child(launch, std::move(wf), std::move(opts), resuming_child);
    if (started.ok()) return;
    auto locked = weak.lock();
    if (!locked) return;
    BatchedRunLock lock(*this, *locked);
    if (locked->generation != gen || index >= locked->tasks.size()) return;
    complete_task(locked, index, NodeOutcome::failure("subgraph could not start: " + started.message()), true);
  });
}

Status EngineImpl::launch_child(const ChildLaunch& launch, std::shared_ptr<const Workflow> workflow, RunOptions options,
                                bool resuming) {
  const std::string child_id = options.run_id;
  if (!resuming || !resume_child(launch.parent, launch.generation, launch.index, child_id, launch.item)) {
    auto child = start_run_internal(std::move(workflow), std::move(options), launch.parent_id, launch.node,
                                    launch.depth, launch.root);
    if (!child.ok()) return child.status();
  }
  cancel_if_parent_cancelled(launch.parent, launch.parent_id, child_id);
  return Status();
}

void EngineImpl::cancel_if_parent_cancelled(const std::weak_ptr<RunContext>& parent, const std::string& parent_id,
                                            const std::string& child_id) {
  RunStatus status = RunStatus::kRunning;
  if (auto locked = parent.lock()) {
    std::lock_guard<std::mutex> lock(locked->mu);
    status = locked->record.status;
  } else if (auto stored = options_.store->get_run(parent_id); stored.ok()) {
    status = stored->status;
  }
  if (status == RunStatus::kCancelled) (void)cancel_run(child_id);
}

// Called with the child's lock held: hand the news to the parent off this lock.
void EngineImpl::notify_parent(RunContext& child) {
  if (child.parent_run_id.empty()) return;
  post([this, parent_id = child.parent_run_id, record = child.record] { tell_parent(parent_id, record); });
}

void EngineImpl::tell_parent(const std::string& parent_id, const RunRecord& child) {
  auto parent = find_context(parent_id);
  if (!parent) return;
  BatchedRunLock lock(*this, *parent);
  (void)deliver_child_stop(parent, child);
}

bool EngineImpl::deliver_child_stop(const std::shared_ptr<RunContext>& parent, const RunRecord& child) {
  for (size_t i = 0; i < parent->tasks.size(); ++i) {
    NodeTask& t = parent->tasks[i];
    if (t.waiting_child && t.child_run_id == child.id) {
      on_child_stopped(parent, i, child);
      return true;
    }
    const int64_t item = t.item_of_child(child.id);
    if (item >= 0) {
      on_item_child_stopped(parent, i, static_cast<size_t>(item), child);
      return true;
    }
  }
  return false;
}

void EngineImpl::unpause_for_ended_child(RunContext& c, const RunRecord& child, const std::string& node) {
  if (!is_terminal(child.status) || c.record.status != RunStatus::kInterrupted || !c.paused_for_child) return;
  // The child was resumed directly and has ended: nothing holds the parent
  // any more, it continues with the child's result.
  c.paused_for_child = false;
  c.record.status = RunStatus::kRunning;
  c.record.updated_at_ms = options_.clock->now_ms();
  if (!options_.store->update_run(c.record).ok()) {  // stays paused: resuming it still works
    c.paused_for_child = true;
    c.record.status = RunStatus::kInterrupted;
    return;
  }
  emit(c, event_kind::kRunResumed, Value::object({{"reason", "subgraph_ended"}, {"node", node}}));
  notify_status_change();
}

void EngineImpl::on_child_stopped(const std::shared_ptr<RunContext>& ctx, size_t index, const RunRecord& child) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  if (t.finished) return;
  const Node& node = *c.compiled->graph->node(t.vertex);
  unpause_for_ended_child(c, child, node.name);
  if (c.record.status == RunStatus::kInterrupted && c.paused_for_child && is_terminal(child.status)) return;
  switch (child.status) {
    case RunStatus::kCompleted:
      complete_task(ctx, index, NodeOutcome::with_update(Value::object({{node.subgraph.output_key, child.state[node.subgraph.output_key]}})), true);
      return;
    case RunStatus::kInterrupted:
      // A pause in the child pauses the parent; resuming the parent resumes the child.
      if (c.record.status == RunStatus::kRunning) {
        pause_run(c, "subgraph_interrupted", node.name);
        c.paused_for_child = true;
      }
      return;
    case RunStatus::kFailed:
      complete_task(ctx, index, NodeOutcome::failure("subgraph run " + child.id + " failed: " + child.error), true);
      return;
    case RunStatus::kCancelled:
      complete_task(ctx, index, NodeOutcome::failure("subgraph run " + child.id + " was cancelled"), true);
      return;
    default:
      return;
  }
}

}  // namespace orch::internal
