// SPDX-License-Identifier: MIT
//
// Scheduler: which nodes run next (SPEC.md §3, "Scheduling rule").
//
// Every edge is pending, fired or dead. A finished node fires its out-edges
// (a conditional edge only when its route chose that value; a goto kills them
// all and triggers the goto targets instead). A node is ready when a back
// in-edge fired, or when none of its forward in-edges is pending and at least
// one fired. A node whose forward in-edges are all dead is skipped: its
// out-edges die too, to a fixpoint; __end__ is never skipped, and it counts as
// reached as soon as one of its in-edges fires (the run completes once nothing
// else is ready or running). A node's in-edges
// return to pending when it becomes ready. A node entered again (a back edge
// fired, or a goto) re-arms what lies downstream of it: every forward edge
// reachable from it returns to pending, so a loop body runs as on its first
// pass, and a node reached by goto after it was skipped feeds its successors
// as usual (what other branches decided, e.g. a dead edge into __end__, is
// kept). Deferred nodes that become ready are parked until nothing else is
// ready or running.
//
// The whole state serializes to a small Value stored in each checkpoint (only
// edges that are not pending are listed), so a run resumes, forks or replays
// exactly where it was (goto choices included) at a cost independent of the
// run's length.
//
// Not thread-safe: owned by one run, used under its lock.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "orch/value.h"

namespace orch::internal {

struct KeptSchedulerState;  // scheduler.cc

class Scheduler {
 public:
  explicit Scheduler(std::shared_ptr<const CompiledGraph> graph);

  // The run starts: __start__'s out-edges fire.
  void start();

  // Nodes to run in the next superstep, in definition order. Their in-edges
  // return to pending. Empty when nothing is ready (see idle()).
  std::vector<int> take_ready();

  // `v` finished. `route` is the chosen value of a route node (nullptr: none);
  // `goto_targets` replaces its static edges when non-null.
  void node_finished(int v, const std::string* route, const std::vector<int>* goto_targets);

  // Recomputes readiness after a superstep's nodes finished.
  void settle();

  // When nothing is ready: moves parked deferred nodes to ready. True if any.
  bool release_deferred();

  bool has_ready() const { return !ready_.empty(); }
  bool end_reached() const { return end_reached_; }
  // Nodes that some fired edge leads to but that are not ready (for the
  // "stuck" error).
  std::vector<std::string> waiting_nodes() const;
  // Nodes of the last superstep that fired none of their out-edges (a route
  // that chose no edge): the "stuck" error names them when nothing waits.
  std::vector<std::string> cut_nodes() const;

  // Breakpoint bookkeeping: interrupt_before fires once per arrival.
  bool breakpoint_passed(int v) const { return passed_before_.count(v) > 0; }
  void set_breakpoint_passed(int v) { passed_before_.insert(v); }
  void clear_breakpoint_passed(int v) { passed_before_.erase(v); }
  // Puts nodes back in the ready set (a superstep that paused before running).
  void restore_ready(const std::vector<int>& nodes);

  const Value& route_results() const { return route_results_; }

  // Equal states of one graph give the same (shared) Value: small graphs'
  // answers are kept per thread (see scheduler.cc).
  Value to_value() const;
  // A checkpoint's metadata: {"route_results" (when a route was taken),
  // "workflow_version", "scheduler": to_value()}, shared as to_value's is.
  Value checkpoint_metadata() const;
  // REQUIRES: `v` came from to_value() for the same graph.
  static Result<Scheduler> from_value(std::shared_ptr<const CompiledGraph> graph, const Value& v);

 private:
  enum EdgeState : char { kPending = '0', kFired = '1', kDead = '2' };

  void reset_in_edges(int v);
  void kill_out_edges(int v);
  void make_ready(int v);
  // `v` is entered again: forward edges reachable from it return to pending.
  void rearm_downstream(int v);
  void set_edge(int e, EdgeState state);  // also queues the edge's target for settle()
  Value build_value() const;  // to_value without the kept answers
  // This thread's kept answers for the current state (added if missing);
  // nullptr when the state is not kept.
  KeptSchedulerState* kept_state() const;

  std::shared_ptr<const CompiledGraph> graph_;
  std::string edges_;            // one EdgeState per edge
  // Sorted, no repeats (a set, without a node allocation per ready vertex).
  std::vector<int> ready_;
  void add_ready(int v);
  std::set<int> parked_;         // deferred nodes waiting for quiet
  std::set<int> passed_before_;  // interrupt_before already fired for this arrival
  std::vector<int> touched_;     // vertices whose in-edges changed since settle()
  std::vector<int> cut_;         // see cut_nodes(); not kept in checkpoints
  // Every edge that is not pending is in here (and some that became pending
  // again until settle() compacts it), so a checkpoint lists the fired and
  // dead edges without scanning all of them.
  std::vector<int> marked_;
  std::vector<char> seen_;       // rearm_downstream's visited set, kept all-zero between calls
  std::vector<int> stack_;
  std::vector<int> visited_;
  Value route_results_ = Value::object();
  bool end_reached_ = false;
};

}  // namespace orch::internal
