// SPDX-License-Identifier: MIT
#include "engine/scheduler.h"

#include <algorithm>
#include <memory>

namespace orch::internal {

Scheduler::Scheduler(std::shared_ptr<const CompiledGraph> graph)
    : graph_(std::move(graph)), edges_(graph_->edges().size(), kPending) {
  // Room for a short run's first supersteps at once (a fan-out marks several
  // edges): growing these from empty cost an allocation per doubling, per run.
  const size_t room = std::min<size_t>(edges_.size(), 16);
  marked_.reserve(room);
  touched_.reserve(room);
  ready_.reserve(std::min<size_t>(graph_->vertex_count(), 16));  // a fan-out's nodes: one allocation, not one per doubling
}

void Scheduler::start() {
  // Conditions on __start__'s edges are meaningless; they all fire.
  for (int e : graph_->out_edges(kStartVertex)) set_edge(e, kFired);
  settle();
}

void Scheduler::reset_in_edges(int v) {
  for (int e : graph_->in_edges(v)) edges_[static_cast<size_t>(e)] = kPending;
}

void Scheduler::kill_out_edges(int v) {
  for (int e : graph_->out_edges(v)) set_edge(e, kDead);
}

void Scheduler::set_edge(int e, EdgeState state) {
  edges_[static_cast<size_t>(e)] = state;
  if (state != kPending) marked_.push_back(e);
  const int target = graph_->edges()[static_cast<size_t>(e)].target;
  // A path reached __end__: once nothing else is ready or running the run is
  // done, whatever other in-edges of __end__ still wait for (nothing can
  // fire them any more then).
  if (target == kEndVertex && state == kFired) end_reached_ = true;
  touched_.push_back(target);
}

void Scheduler::rearm_downstream(int v) {
  if (seen_.empty()) seen_.assign(graph_->vertex_count(), 0);
  visited_.assign(1, v);
  seen_[static_cast<size_t>(v)] = 1;
  stack_.assign(1, v);
  while (!stack_.empty()) {
    int u = stack_.back();
    stack_.pop_back();
    for (int e : graph_->out_edges(u)) {
      const GraphEdge& edge = graph_->edges()[static_cast<size_t>(e)];
      if (edge.back) continue;  // an enclosing loop's edge: not this pass's business
      edges_[static_cast<size_t>(e)] = kPending;
      if (!seen_[static_cast<size_t>(edge.target)]) {
        seen_[static_cast<size_t>(edge.target)] = 1;
        visited_.push_back(edge.target);
        stack_.push_back(edge.target);
      }
    }
  }
  for (int u : visited_) seen_[static_cast<size_t>(u)] = 0;
}

void Scheduler::make_ready(int v) {
  reset_in_edges(v);
  if (v == kEndVertex) {
    end_reached_ = true;
    return;
  }
  const Node* node = graph_->node(v);
  if (node != nullptr && node->defer) {
    parked_.insert(v);
  } else {
    add_ready(v);
  }
}

void Scheduler::add_ready(int v) {
  auto at = std::lower_bound(ready_.begin(), ready_.end(), v);
  if (at == ready_.end() || *at != v) ready_.insert(at, v);
}

std::vector<int> Scheduler::take_ready() {
  std::vector<int> out(ready_);  // vertex order = definition order
  ready_.clear();
  cut_.clear();
  return out;
}

void Scheduler::node_finished(int v, const std::string* route, const std::vector<int>* goto_targets) {
  if (goto_targets != nullptr) {
    kill_out_edges(v);
    for (int t : *goto_targets) {
      rearm_downstream(t);
      make_ready(t);
    }
    return;
  }
  if (route != nullptr) route_results_.set(graph_->name(v), *route);
  bool any_fired = false;
  for (int e : graph_->out_edges(v)) {
    const GraphEdge& edge = graph_->edges()[static_cast<size_t>(e)];
    bool fires = !edge.condition || (route != nullptr && *edge.condition == *route);
    set_edge(e, fires ? kFired : kDead);
    any_fired = any_fired || fires;
  }
  if (!any_fired && !graph_->out_edges(v).empty()) cut_.push_back(v);
}

// Only vertices with an in-edge that changed since the last settle can become
// ready or skipped, so settle works through that list (and what skipping adds
// to it) instead of scanning the whole graph every superstep.
void Scheduler::settle() {
  while (!touched_.empty()) {
    int v = touched_.back();
    touched_.pop_back();
    if (v == kStartVertex || std::binary_search(ready_.begin(), ready_.end(), v) || parked_.count(v)) continue;
    const auto& in = graph_->in_edges(v);
    bool back_fired = false, any_forward = false, forward_pending = false, forward_fired = false;
    for (int e : in) {
      const GraphEdge& edge = graph_->edges()[static_cast<size_t>(e)];
      char s = edges_[static_cast<size_t>(e)];
      if (edge.back) {
        back_fired = back_fired || s == kFired;
        continue;
      }
      any_forward = true;
      forward_pending = forward_pending || s == kPending;
      forward_fired = forward_fired || s == kFired;
    }
    if (back_fired) {
      rearm_downstream(v);  // the loop goes round again
      make_ready(v);
    } else if (any_forward && !forward_pending && forward_fired) {
      make_ready(v);
    } else if (any_forward && !forward_pending && !forward_fired && v != kEndVertex) {
      // Every forward in-edge is dead: skip the node and let the death spread.
      // Its dead in-edges stay dead until something upstream is entered again.
      kill_out_edges(v);
    }
  }
  // Keep marked_ to the edges still fired or dead, in edge order.
  std::sort(marked_.begin(), marked_.end());
  marked_.erase(std::unique(marked_.begin(), marked_.end()), marked_.end());
  marked_.erase(std::remove_if(marked_.begin(), marked_.end(),
                               [this](int e) { return edges_[static_cast<size_t>(e)] == kPending; }),
                marked_.end());
}

bool Scheduler::release_deferred() {
  if (parked_.empty()) return false;
  for (int v : parked_) add_ready(v);
  parked_.clear();
  return true;
}

void Scheduler::restore_ready(const std::vector<int>& nodes) {
  for (int v : nodes) add_ready(v);
}

std::vector<std::string> Scheduler::waiting_nodes() const {
  std::vector<std::string> out;
  for (int v = 1; v < static_cast<int>(graph_->vertex_count()); ++v) {
    for (int e : graph_->in_edges(v)) {
      if (edges_[static_cast<size_t>(e)] == kFired) {
        out.push_back(graph_->name(v));
        break;
      }
    }
  }
  return out;
}

std::vector<std::string> Scheduler::cut_nodes() const {
  std::vector<std::string> out;
  for (int v : cut_) out.push_back(graph_->name(v));
  return out;
}

namespace {
template <class Vertices>  // ordered, no repeats
Value names_of(const CompiledGraph& g, const Vertices& vs) {
  if (vs.size() == 1) return g.name_list_value(*vs.begin());  // shared, built once
  Value out = Value::array();
  for (int v : vs) out.push_back(g.name_value(v));
  return out;
}

Result<std::set<int>> vertices_of(const CompiledGraph& g, const Value& names) {
  std::set<int> out;
  if (!names.is_array()) return out;
  for (const Value& n : names.as_array()) {
    int v = n.is_string() ? g.vertex(n.as_string()) : -1;
    if (v < 0) return Status::invalid_argument("checkpoint names unknown node " + n.to_json());
    out.insert(v);
  }
  return out;
}
}  // namespace

// to_value's answers for small graphs, kept per thread. Short runs of one
// workflow pass through the same scheduler states run after run (all of
// __start__'s edges fired and its targets ready, then the join's in-edges
// fired...), and building the Value (lists of edges and names) cost several
// times more than finding an equal state here. Only states with nothing
// parked, passed or routed are kept: what remains is the edges' states, the
// ready nodes and end_reached, compared whole.
struct KeptSchedulerState {
  // Compared by control block: while this reference lives, no other graph
  // can have the same one (a graph freed and another made at its address
  // would not be taken for it).
  std::weak_ptr<const CompiledGraph> graph;
  std::string edges;
  std::vector<int> ready;
  bool end_reached = false;
  Value value;
  // checkpoint_metadata's answer, built when first asked for.
  Value metadata;
  int64_t metadata_version = 0;
};

namespace {
constexpr size_t kKeptStates = 8;
constexpr size_t kMaxKeptEdges = 64;  // larger graphs rarely repeat a state; copying it would only cost
thread_local KeptSchedulerState t_kept_states[kKeptStates];
thread_local size_t t_next_kept_state = 0;

bool same_graph(const std::weak_ptr<const CompiledGraph>& kept, const std::shared_ptr<const CompiledGraph>& graph) {
  return !kept.owner_before(graph) && !graph.owner_before(kept);
}
}  // namespace

KeptSchedulerState* Scheduler::kept_state() const {
  if (edges_.size() > kMaxKeptEdges || !parked_.empty() || !passed_before_.empty() || route_results_.size() > 0) {
    return nullptr;
  }
  for (KeptSchedulerState& kept : t_kept_states) {
    if (kept.end_reached == end_reached_ && kept.edges == edges_ && kept.ready == ready_ && same_graph(kept.graph, graph_)) {
      return &kept;
    }
  }
  KeptSchedulerState& slot = t_kept_states[t_next_kept_state++ % kKeptStates];
  slot.graph = graph_;
  slot.edges = edges_;
  slot.ready = ready_;
  slot.end_reached = end_reached_;
  slot.value = build_value();
  slot.metadata = Value();
  return &slot;
}

Value Scheduler::to_value() const {
  const KeptSchedulerState* kept = kept_state();
  return kept != nullptr ? kept->value : build_value();
}

Value Scheduler::checkpoint_metadata() const {
  const int64_t version = graph_->workflow().version;
  if (route_results_.size() > 0) {
    return Value::object({{"route_results", route_results_}, {"workflow_version", version}, {"scheduler", to_value()}});
  }
  KeptSchedulerState* kept = kept_state();  // this thread's: not shared
  if (kept == nullptr) return Value::object({{"workflow_version", version}, {"scheduler", build_value()}});
  if (kept->metadata.is_null() || kept->metadata_version != version) {
    kept->metadata = Value::object({{"workflow_version", version}, {"scheduler", kept->value}});
    kept->metadata_version = version;
  }
  return kept->metadata;
}

Value Scheduler::build_value() const {
  // Written at every checkpoint: empty lists and defaults are left out
  // (from_value reads a missing key as empty).
  Object o;  // usually no more members than an Object holds in place
  o.set("edge_count", graph_->edges().size());
  Value fired;
  Value dead;
  // settle() may not have compacted marked_ yet: a sorted copy, in a buffer
  // this thread reuses (one is written per checkpoint).
  thread_local std::vector<int> marked;
  marked.assign(marked_.begin(), marked_.end());
  std::sort(marked.begin(), marked.end());
  marked.erase(std::unique(marked.begin(), marked.end()), marked.end());
  for (int e : marked) {
    if (edges_[static_cast<size_t>(e)] == kFired) fired.push_back(e);
    if (edges_[static_cast<size_t>(e)] == kDead) dead.push_back(e);
  }
  if (!fired.is_null()) o.set("fired", std::move(fired));
  if (!dead.is_null()) o.set("dead", std::move(dead));
  if (!ready_.empty()) o.set("ready", names_of(*graph_, ready_));
  if (!parked_.empty()) o.set("parked", names_of(*graph_, parked_));
  if (!passed_before_.empty()) o.set("passed_before", names_of(*graph_, passed_before_));
  if (route_results_.size() > 0) o.set("route_results", route_results_);
  if (end_reached_) o.set("end_reached", true);
  return Value(std::move(o));
}

Result<Scheduler> Scheduler::from_value(std::shared_ptr<const CompiledGraph> graph, const Value& v) {
  Scheduler s(graph);
  if (v["edge_count"].get_int(-1) != static_cast<int64_t>(s.edges_.size())) {
    return Status::invalid_argument("checkpoint scheduler state does not match the workflow");
  }
  for (auto [key, state] : {std::pair{"fired", kFired}, std::pair{"dead", kDead}}) {
    const Value& list = v[key];
    if (!list.is_array()) continue;
    for (const Value& e : list.as_array()) {
      int64_t i = e.get_int(-1);
      if (i < 0 || i >= static_cast<int64_t>(s.edges_.size())) {
        return Status::invalid_argument("checkpoint scheduler state names edge " + e.to_json());
      }
      s.set_edge(static_cast<int>(i), state);
    }
  }
  ORCH_ASSIGN_OR_RETURN(std::set<int> ready, vertices_of(*graph, v["ready"]));
  s.ready_.assign(ready.begin(), ready.end());
  ORCH_ASSIGN_OR_RETURN(s.parked_, vertices_of(*graph, v["parked"]));
  ORCH_ASSIGN_OR_RETURN(s.passed_before_, vertices_of(*graph, v["passed_before"]));
  s.end_reached_ = v["end_reached"].get_bool(false);
  if (v["route_results"].is_object()) s.route_results_ = v["route_results"];
  return s;
}

}  // namespace orch::internal
