// SPDX-License-Identifier: MIT
//
// The engine's internals (not installed). One RunContext per executing run,
// guarded by its own mutex: runs never wait on each other, and no lock is held
// while a worker or an in-process function runs.
#pragma once

#include <asio/thread_pool.hpp>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "engine/graph.h"
#include "engine/node_outcome.h"
#include "engine/run_trace.h"
#include "orch/engine.h"
#include "orch/template.h"
#include "engine/scheduler.h"

namespace orch::internal {

// Per-workflow data computed once: the graph and the compiled templates.
struct CompiledWorkflow {
  std::shared_ptr<const CompiledGraph> graph;
  std::unordered_map<std::string, Template> prompts;        // node name -> prompt_template
  std::unordered_map<std::string, Template> continuations;  // node name -> continuation_prompt
};

// One node of the superstep in flight.
struct NodeTask {
  // Written out (not defaulted) so that a superstep's tasks (resize) are not
  // zeroed whole before their members are initialized: every member has an
  // initializer or a constructor of its own.
  NodeTask() {}  // NOLINT(modernize-use-equals-default)
  int vertex = -1;
  std::string step_id;
  // step_id as a shared JSON string, for the events that name it.
  const Value& step_id_value() {
    if (!step_id_json.is_string() || step_id_json.as_string() != step_id) step_id_json = Value(step_id);
    return step_id_json;
  }
  Value step_id_json;
  int attempt = 1;
  int turn = 1;
  uint64_t token = 0;            // identifies the current attempt; stale replies are ignored
  Clock::TimerId timer = 0;      // deadline or retry timer
  bool finished = false;
  bool waiting_child = false;    // subgraph waiting for its child run
  std::string child_run_id;
  NodeOutcome outcome;
  StepRecord step;               // the current attempt's record, as last written
  bool has_step_record = false;  // a record under step_id was written this superstep
  // Finished, and its result is still to be kept as a pending write: built
  // only if the batch goes out before the superstep's checkpoint joins it
  // (EngineImpl::write_due_pending), which makes it needless.
  bool pending_write_due = false;
  bool planned = false;          // step_id is a record written pending at the run's start
  bool in_process = false;       // the current attempt is an in-process function call
  int64_t started_ms = 0;
  std::string cache_key;         // set when the node's result may be cached
  // agent multi-turn
  std::string last_output;
  Value last_envelope;
  int64_t first_turn_done_ms = 0;
  // send fan-out
  std::vector<Value> items;
  std::vector<Value> item_results;
  std::vector<std::vector<Value>> item_updates;
  std::vector<int> item_attempts;
  std::vector<std::pair<size_t, std::string>> item_errors;
  // The step record of each item's worker call in flight, as last written
  // (`<send>_<i>`, as NullBoiler's), by item: as many as calls in flight, not
  // as items (in-process items have none).
  // (A send to a subgraph node: each item's child run, while it runs, is
  // its record's child_run_id.)
  std::unordered_map<size_t, StepRecord> item_steps;
  // The item whose child run is `child_id`, while it runs; -1 if none.
  int64_t item_of_child(const std::string& child_id) const {
    for (const auto& [item, record] : item_steps) {
      if (record.child_run_id == child_id) return static_cast<int64_t>(item);
    }
    return -1;
  }
  // The child runs this node waits for: a subgraph node's, a send's items'.
  std::vector<std::string> child_runs() const {
    std::vector<std::string> ids;
    if (waiting_child) ids.push_back(child_run_id);
    for (const auto& [item, record] : item_steps) {
      if (!record.child_run_id.empty()) ids.push_back(record.child_run_id);
    }
    return ids;
  }
  std::vector<size_t> retry_items;  // items whose back-off ended
  size_t next_item = 0;
  size_t items_in_flight = 0;
  size_t items_done = 0;
};

struct Injection {
  Value updates;
  std::string after_node;  // empty: at the next superstep boundary
};

// A run's batch handed to Store::write_batch_async and not yet written, and
// the worker calls that go out once it is (EngineImpl::flush_then_send).
struct InflightWrite {
  std::mutex mu;
  bool finished = false;
  std::vector<std::function<void()>> sends;
  // Queues `send` for when the write finishes; false when it has (send now).
  bool add(std::function<void()>& send) {
    std::lock_guard<std::mutex> lock(mu);
    if (finished) return false;
    sends.push_back(std::move(send));
    return true;
  }
  std::vector<std::function<void()>> finish() {
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
    return std::move(sends);
  }
};

struct RunContext : std::enable_shared_from_this<RunContext> {
  // As NodeTask's: make_shared would otherwise zero the whole context (some
  // kilobytes) before initializing its members, once per run.
  RunContext() {}  // NOLINT(modernize-use-equals-default)
  std::mutex mu;
  RunRecord record;
  // The run's end is being written without waiting (EngineImpl::
  // write_end_async): until the store confirms it, readers get the stored
  // record, never an end that a crash could still undo. Stays set when that
  // write fails. Cleared by the store's callback, which takes no run lock.
  std::atomic<bool> end_unconfirmed{false};
  // record.id as a shared JSON string (for what every node's request carries).
  const Value& run_id_value() const {
    if (!run_id_json.is_string() || run_id_json.as_string() != record.id) run_id_json = Value(record.id);
    return run_id_json;
  }
  mutable Value run_id_json;
  std::shared_ptr<const CompiledWorkflow> compiled;
  std::unique_ptr<Scheduler> scheduler;
  Value state;
  // Last committed checkpoint version: -1 before a run's first, which is
  // then version 0 (__init__ or __fork__, as in NullBoiler); superstep k
  // (from 1) commits version k.
  int64_t version = -1;
  std::string last_checkpoint_id;
  int64_t recursion_limit = 1000;
  Durability durability = Durability::kSync;
  // Breakpoints by vertex (empty: none); a list in a request may be long, so
  // it is looked up once here, not at every superstep.
  std::vector<bool> break_before;
  std::vector<bool> break_after;
  bool breaks_before(int v) const { return !break_before.empty() && break_before[static_cast<size_t>(v)]; }
  bool breaks_after(int v) const { return !break_after.empty() && break_after[static_cast<size_t>(v)]; }
  std::vector<NodeTask> tasks;   // the superstep in flight
  size_t outstanding = 0;
  size_t pending_writes_due = 0;  // tasks with pending_write_due set
  bool in_superstep = false;
  // Interrupted only because a subgraph child paused: once that child ends
  // (resumed on its own), the run goes on by itself.
  bool paused_for_child = false;
  bool advancing = false;        // EngineImpl::advance is on the stack (it loops, never nests)
  uint64_t generation = 0;       // bumped by cancel; callbacks of older generations are dropped
  // Fencing (Store::claim_run_lease): the epoch of this engine's lease on the
  // run, sent with each batch; lease_lost once the store refused a batch
  // because another owner took the run over (the run is then dropped).
  int64_t lease_epoch = 0;
  bool lease_lost = false;
  std::vector<Injection> injections;
  std::map<std::string, Value> recorded;  // node -> outcome recorded before a crash
  // Async workers: steps the store had as running when the run was loaded
  // (node -> step id, attempt). The next superstep relaunches them under the
  // same id and attempt, so their worker call keeps its call id and an
  // mqtt/redis_stream protocol waits for the reply to the request it already
  // sent instead of sending it again. Consumed by start_superstep.
  std::map<std::string, std::pair<std::string, int>> resumable_steps;
  // Subgraph nodes among them: node -> the child run that was running, which
  // the relaunched node continues (EngineImpl::resume_child) instead of
  // starting a new child.
  std::map<std::string, std::string> resumable_children;
  // And a send's per-item children (a send to a subgraph node): the item's
  // record ("<send>_<i>") -> that record, naming its child run.
  std::map<std::string, StepRecord> resumable_item_children;
  // RunOptions::plan_steps: node -> the pending record written for its first
  // execution, whose id that execution takes over.
  std::map<std::string, std::string> planned_steps;
  // Tracing (EngineOptions::tracer): the caller's traceparent, and the spans
  // of the current execution (null without a tracer, or between executions).
  std::string traceparent;
  std::unique_ptr<RunTrace> trace;
  int depth = 0;                 // subgraph nesting
  std::string root_run_id;       // the top-level run of a subgraph family (its own id at the top)
  // About how many bytes the state takes (see value_bytes): grown by each
  // superstep's updates, measured exactly when it passes the limit. -1: not known.
  int64_t state_bytes = -1;
  // Set when this run is a subgraph child: who to tell when it stops.
  std::string parent_run_id;
  // Durability "exit": the newest checkpoint, written only at pause or end.
  std::optional<Checkpoint> unsaved_checkpoint;
  uint64_t next_token = 1;
  // In-process node calls queued to run on the current engine thread once it
  // drops the lock (see EngineImpl::locked_then_drain), instead of a thread hop.
  bool draining = false;
  std::vector<std::function<void()>> inline_work;
  // Engine::invoke's thread is executing the run (its outermost
  // locked_then_drain): every in-process call queues as inline work for it
  // (unless EngineOptions::parallel_function_nodes), and a run that ends
  // meanwhile is evicted by that thread, not by a posted job.
  bool caller_drives = false;
  bool evict_by_caller = false;  // set by finish_run while caller_drives
  bool record_taken = false;     // invoke handed `record` to its caller (the context is evicted)
  // The batch's run record (StoreBatch::run) is this record: it is lent to
  // the store for the write (moved in and back), not copied.
  bool run_in_batch = false;
  // While an engine thread works through a run (locked_then_drain), its store
  // writes gather here and go out as one batch (one SQLite transaction) at a
  // checkpoint, when the run pauses or ends, and before the thread leaves it.
  bool batching = false;
  // Set while a worker's reply is handled outside Engine::invoke (a
  // BatchedRunLock asked for it): the batch, the run's end included, goes to
  // Store::write_batch_async and this thread does not wait for it.
  bool async_writes = false;
  StoreBatch batch;
  std::vector<EventRecord> spare_events;  // written events, reused by emit()
  // The batch holds a superstep's checkpoint that was left to go out with
  // the writes that follow it (the next step's record before its call is
  // sent, say): one transaction per superstep instead of two. Should that
  // batch fail, the run fails as a failed checkpoint does.
  bool checkpoint_deferred = false;
  // The run's newest write_batch_async still in flight (or finished: then
  // nothing waits for it).
  std::shared_ptr<InflightWrite> inflight;
  // One wall-clock reading serves every record and event of a short locked
  // section (EngineImpl::stamp_ms): set on first use inside a section that
  // opted in (`stamping`), cleared when it ends, unlocks or writes.
  bool stamping = false;
  int64_t stamp = -1;
  void start_stamping() {
    stamping = true;
    stamp = -1;
  }
  void stop_stamping() {
    stamping = false;
    stamp = -1;
  }
};

}  // namespace orch::internal
