// SPDX-License-Identifier: MIT
//
// A send node whose target is a subgraph node: each item runs the target's
// workflow as a child run, its input the target's input_mapping plus the item
// under "item". The item's result is what the child leaves at the target's
// output_key; a child that fails or is cancelled fails the item (null with
// on_item_error "null"), one that pauses pauses the parent, as a subgraph
// node's does.
//
// Each child has a step record, "<send>_<i>" of type subgraph, naming it,
// stored before the child starts: a run loaded after a crash or a takeover
// continues its items' children (or takes the result of those that ended)
// instead of starting others. Every entry point runs with the run's lock held.
#include "engine/engine_impl.h"
#include "orch/id.h"
#include "orch/state_path.h"

namespace orch::internal {

std::optional<EngineImpl::ItemChildStart> EngineImpl::start_item_child(const std::shared_ptr<RunContext>& ctx,
                                                                       size_t index, size_t item) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& send = *c.compiled->graph->node(t.vertex);
  const Node& target = *c.compiled->graph->workflow().find_node(send.send.target_node);
  auto prepared = prepare_child_run(c, index, target);
  if (!prepared.ok()) {
    // As a failed call (off this loop: the item's end may launch the next).
    std::weak_ptr<RunContext> weak = ctx;
    post([this, weak, gen = c.generation, index, item, why = prepared.status().message()] {
      auto locked = weak.lock();
      if (!locked) return;
      BatchedRunLock lock(*this, *locked);
      if (locked->generation != gen || index >= locked->tasks.size()) return;
      on_item_reply(locked, index, item, Status::failed_precondition(why), "", false);
    });
    return std::nullopt;
  }
  ItemChildStart start;
  start.workflow = std::move(prepared->workflow);
  start.options = std::move(prepared->options);
  start.options.input.set("item", t.items[item]);
  start.item = item;
  const std::string record_name = send.name + "_" + std::to_string(item);
  StepRecord step;
  auto loaded = c.resumable_item_children.find(record_name);
  if (loaded != c.resumable_item_children.end()) {
    step = std::move(loaded->second);  // the loaded run's child for this item: continued
    c.resumable_item_children.erase(loaded);
    start.resuming = true;
  } else {
    step.id = new_uuid();
    step.run_id = c.record.id;
    step.node_name = record_name;
    step.type = std::string(node_type_name(NodeType::kSubgraph));
    step.status = StepStatus::kRunning;
    step.attempt = 1;
    step.max_attempts = 1;
    step.superstep = c.version + 1;
    step.item_index = static_cast<int>(item);
    step.parent_step_id = t.step_id;
    step.input = t.items[item];
    step.child_run_id = new_uuid();
    step.created_at_ms = step.started_at_ms = stamp_ms(c);
    write_step(c, step);
  }
  start.options.run_id = step.child_run_id;
  t.item_steps[item] = std::move(step);  // naming the child while it runs
  return start;
}

void EngineImpl::run_item_children(const std::shared_ptr<RunContext>& ctx, size_t index,
                                   std::vector<ItemChildStart> starts) {
  RunContext& c = *ctx;
  // The records naming the children are stored before any child starts.
  (void)flush(c);
  if (is_terminal(c.record.status)) return;  // the flush failed the run (or lost it)
  std::weak_ptr<RunContext> weak = ctx;
  const uint64_t gen = c.generation;
  const std::string parent_id = c.record.id;
  const std::string node = c.compiled->graph->name(c.tasks[index].vertex);
  const int depth = c.depth + 1;
  const std::string root = c.root_run_id.empty() ? c.record.id : c.root_run_id;
  for (ItemChildStart& start : starts) {
    post([this, weak, gen, index, start = std::move(start), parent_id, node, depth, root]() mutable {
      const std::string child_id = start.options.run_id;
      ChildLaunch launch{weak, gen, index, static_cast<int64_t>(start.item), parent_id, node, depth, root};
      Status started = launch_child(launch, std::move(start.workflow), std::move(start.options), start.resuming);
      if (started.ok()) return;
      auto locked = weak.lock();
      if (!locked) return;
      BatchedRunLock lock(*this, *locked);
      if (locked->generation != gen || index >= locked->tasks.size()) return;
      item_child_failed(locked, index, start.item, child_id, "subgraph could not start: " + started.message());
    });
  }
}

void EngineImpl::close_item_child_record(RunContext& c, NodeTask& t, size_t item, const Status& error, Value output) {
  auto found = t.item_steps.find(item);
  if (found == t.item_steps.end()) return;
  StepRecord step = std::move(found->second);
  t.item_steps.erase(found);
  step.status = error.ok() ? StepStatus::kCompleted : StepStatus::kFailed;
  step.ended_at_ms = stamp_ms(c);
  if (error.ok()) {
    step.output = std::move(output);
  } else {
    step.error = error.message();
  }
  write_step(c, std::move(step));
}

void EngineImpl::item_child_failed(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item,
                                   const std::string& child_id, const std::string& error) {
  NodeTask& t = ctx->tasks[index];
  if (t.item_of_child(child_id) != static_cast<int64_t>(item)) return;  // already heard of
  const Status failure = Status::internal(error);
  close_item_child_record(*ctx, t, item, failure, Value());
  if (t.finished) return;  // the send failed already: nothing waits for this item
  --t.items_in_flight;
  item_finished(ctx, index, item, failure, Value(), Value());
}

void EngineImpl::on_item_child_stopped(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item,
                                       const RunRecord& child) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& send = *c.compiled->graph->node(t.vertex);
  unpause_for_ended_child(c, child, send.name);
  if (c.record.status == RunStatus::kInterrupted && c.paused_for_child && is_terminal(child.status)) return;
  switch (child.status) {
    case RunStatus::kCompleted: {
      const Node& target = *c.compiled->graph->workflow().find_node(send.send.target_node);
      const std::string& key = target.subgraph.output_key;
      Value result = child.state[key];
      close_item_child_record(c, t, item, Status(), Value::object({{key, result}}));
      if (t.finished) return;
      --t.items_in_flight;
      item_finished(ctx, index, item, Status(), std::move(result), Value());
      return;
    }
    case RunStatus::kInterrupted: {
      // A pause in a child pauses the parent; resuming the parent resumes it.
      // The news may be older than the parent's resume (which resumed the
      // children): a child no longer paused does not pause it again. (Should
      // the child be resumed just after this look, the parent goes on again
      // once the child ends: unpause_for_ended_child.)
      auto now = options_.store->get_run(child.id);
      if (now.ok() && now->status != RunStatus::kInterrupted) return;
      if (c.record.status == RunStatus::kRunning && !t.finished) {
        pause_run(c, "subgraph_interrupted", send.name);
        c.paused_for_child = true;
      }
      return;
    }
    case RunStatus::kFailed:
      item_child_failed(ctx, index, item, child.id, "subgraph run " + child.id + " failed: " + child.error);
      return;
    case RunStatus::kCancelled:
      item_child_failed(ctx, index, item, child.id, "subgraph run " + child.id + " was cancelled");
      return;
    default:
      return;
  }
}

}  // namespace orch::internal
