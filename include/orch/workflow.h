// SPDX-License-Identifier: MIT
//
// Workflow: an immutable, typed workflow definition (a graph of nodes over one
// shared state), parsed once from NullBoiler-compatible JSON or built in C++
// with WorkflowBuilder. The engine reads only these typed fields at run time,
// never the node JSON.
//
// Ownership: a parsed Workflow is shared as std::shared_ptr<const Workflow>; a
// run keeps the definition it started with alive.
//
// Thread-safety: a Workflow is immutable after construction and may be read
// from any number of threads. WorkflowBuilder is not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch {

// When the engine writes a run's checkpoints (NullBoiler's durability modes):
// kSync after every superstep, fsynced; kFull after every superstep, left to
// the store's usual durability; kExit only when the run pauses or ends.
enum class Durability { kSync, kFull, kExit };
// "sync", "full", "exit".
ORCH_EXPORT const char* durability_name(Durability durability);
// nullopt for any other name.
ORCH_EXPORT std::optional<Durability> durability_from_name(std::string_view name);


// The synthetic entry and exit of every graph.
inline constexpr std::string_view kStartNode = "__start__";
inline constexpr std::string_view kEndNode = "__end__";

enum class NodeType { kTask, kAgent, kRoute, kInterrupt, kSend, kTransform, kSubgraph };

// "task", "agent", "route", "interrupt", "send", "transform", "subgraph".
ORCH_EXPORT std::string_view node_type_name(NodeType type);
ORCH_EXPORT std::optional<NodeType> node_type_from_name(std::string_view name);

enum class ReducerKind { kLastValue, kAppend, kMerge, kAdd, kMin, kMax, kAddMessages };

// "last_value", "append", "merge", "add", "min", "max", "add_messages".
ORCH_EXPORT std::string_view reducer_name(ReducerKind kind);
ORCH_EXPORT std::optional<ReducerKind> reducer_from_name(std::string_view name);

// One declared state key (`state_schema` entry).
struct StateKey {
  std::string name;
  std::string type;  // "string", "array", "number", "boolean", "object", or other/empty
  ReducerKind reducer = ReducerKind::kLastValue;
  bool ephemeral = false;
  // The reducer as written when it names none of the seven (then `reducer` is
  // kLastValue, as in NullBoiler); empty otherwise. Validation reports it.
  std::string unknown_reducer;
};

// Retry of task/agent nodes. Defaults match NullBoiler; clamps are applied at parse.
struct RetryPolicy {
  int max_attempts = 1;                 // 1..100
  int64_t initial_interval_ms = 500;    // >= 0
  double backoff_factor = 2.0;
  int64_t max_interval_ms = 30000;      // >= 0
  double jitter = 0.1;                  // 0..1: fraction of the delay added at random (0 = none)
};

// What an in-process node (a C++ callable bound to a node) is given.
struct NodeCall {
  const Value& state;        // the superstep's state snapshot, with __meta and __config
  const Value& input;        // the run's input
  const Value& config;       // the run's config (defaults merged)
  std::string_view run_id;
  std::string_view node_name;
  int attempt = 1;           // 1 for the first try
  const Value* item = nullptr;  // the current item when run by a send node
  std::string_view prompt;   // the rendered prompt_template ("" when none)
};

// What an in-process node returns: state updates (an object, applied through
// the reducers) and optionally a goto that replaces the node's static edges.
struct NodeOutput {
  NodeOutput() = default;
  NodeOutput(Value u) : updates(std::move(u)) {}  // NOLINT: a bare Value means "these updates"
  Value updates;
  std::vector<std::string> goto_nodes;
  bool done = false;  // agent nodes: end the turn loop
};

// A C++ callable that does a node's work in-process. It may throw; the engine
// turns an exception into a failed attempt.
using NodeFunction = std::function<Result<NodeOutput>(const NodeCall&)>;

struct TaskConfig {
  std::optional<std::string> prompt_template;  // absent: the node completes with no change
  std::vector<std::string> worker_tags;
  std::optional<std::string> output_key;
  std::vector<std::pair<std::string, std::string>> output_mapping;  // state key -> output path
  RetryPolicy retry;
  std::optional<int64_t> cache_ttl_ms;
  std::optional<int64_t> timeout_ms;
  // agent only
  int max_turns = 1;  // 1..100
  std::optional<std::string> continuation_prompt;
  std::optional<int64_t> turn_timeout_ms;
};

struct RouteConfig {
  std::string input = "state.route_input";                   // state path
  std::vector<std::pair<std::string, std::string>> routes;   // value -> target, in JSON order
  std::optional<std::string> default_route;
};

struct SendConfig {
  std::string items_key;                    // state path (items_from accepted)
  std::string target_node;
  std::string output_key = "send_results";
  std::optional<int> max_concurrency;
  bool null_on_item_error = false;          // "on_item_error": "null"
};

struct TransformConfig {
  Value updates = Value::object();  // a JSON object (a string holding JSON is parsed)
  Value store_updates;              // null, or an array of {namespace, key, value}
};

struct SubgraphConfig {
  std::string workflow_id;
  std::vector<std::pair<std::string, std::string>> input_mapping;  // child key -> parent path
  std::string output_key = "output";
};

struct InterruptConfig {
  std::string message;
};

struct Node {
  std::string name;
  NodeType type = NodeType::kTask;
  // The `type` as written when it names none of the seven node types (then
  // `type` is kTask); empty otherwise. Validation reports it and the engine
  // fails such a node with "unknown node type" when it becomes ready.
  std::string unknown_type;
  bool defer = false;
  // Only the config matching `type` is meaningful (task and agent share `task`).
  TaskConfig task;
  RouteConfig route;
  SendConfig send;
  TransformConfig transform;
  SubgraphConfig subgraph;
  InterruptConfig interrupt;
  // When set, the node runs this callable instead of dispatching to a worker.
  NodeFunction function;
};

// An edge source -> target. A conditional edge ("route:value" in JSON) fires
// only when the route node `source` chose `condition`.
struct Edge {
  std::string source;
  std::string target;
  std::optional<std::string> condition;
};

class ORCH_EXPORT Workflow {
 public:
  std::string id;
  std::string name;
  int64_t version = 1;
  std::vector<Node> nodes;        // definition (JSON) order
  std::vector<Edge> edges;        // definition order
  std::vector<StateKey> state_schema;  // declaration order
  std::vector<std::string> interrupt_before;
  std::vector<std::string> interrupt_after;
  Value defaults = Value::object();  // merged under each run's config
  std::optional<int64_t> recursion_limit;
  std::optional<std::string> durability;  // "sync", "full" or "exit"
  Value definition;  // the JSON it was parsed from (null for builder workflows)

  // nullptr when absent.
  const Node* find_node(std::string_view name) const;
  const StateKey* find_state_key(std::string_view name) const;
  // Index in `nodes`, or -1.
  int node_index(std::string_view name) const;

  // Rebuilds the name lookups; called by the parser and the builder.
  void reindex();

 private:
  std::unordered_map<std::string, int> node_index_;
  std::unordered_map<std::string, int> state_key_index_;
};

// Size caps on a workflow, checked before any other work on it, so that a
// hostile definition cannot make parsing, validation or compilation slow or
// large. A definition beyond them gets the issue too_many_nodes or
// too_many_edges (alone), and parse_workflow() fails with its message.
struct WorkflowLimits {
  // Entries of `nodes`. Default 10 000; 0: no limit.
  size_t max_nodes = 10000;
  // Entries of `edges` plus the targets of route nodes' `routes` (each is a
  // conditional edge in all but name). Default 50 000; 0: no limit.
  size_t max_edges = 50000;
};

// Parses a NullBoiler workflow definition. Accepts its coercions (node fields
// that are not strings read as their JSON text, `updates` as an object or a
// JSON string, `items_from`, `schema` for `state_schema`). Fails with
// InvalidArgument only when the document cannot be a workflow at all (not an
// object, `nodes` not an object, `edges` not an array, a size beyond `limits`;
// the message is that of validation's fatal issue); everything else is
// validate_workflow()'s job: a value of the wrong type falls back to its
// default (NullBoiler's leniency), an unknown node type or reducer is kept in
// Node::unknown_type / StateKey::unknown_reducer, a malformed edge is left out.
ORCH_EXPORT Result<std::shared_ptr<const Workflow>> parse_workflow(
    const Value& definition, const WorkflowLimits& limits = {});
ORCH_EXPORT Result<std::shared_ptr<const Workflow>> parse_workflow_json(
    std::string_view json_text, const WorkflowLimits& limits = {});

// Binds C++ functions to nodes by name, without editing the parsed workflow:
// returns a copy whose named nodes run their function (Node::function)
// instead of going to a worker. Only task and agent nodes run functions.
// InvalidArgument for a name that is no such node, a node named twice, or an
// empty function. The workflow given is left as it was.
//
//   auto bound = orch::bind_functions(*parsed, {{"draft", draft_fn}, {"review", review_fn}});
using NodeFunctions = std::vector<std::pair<std::string, NodeFunction>>;
ORCH_EXPORT Result<std::shared_ptr<const Workflow>> bind_functions(const std::shared_ptr<const Workflow>& workflow,
                                                                   const NodeFunctions& functions);

// The definition JSON of a workflow (NullBoiler format), e.g. to store or draw a
// builder workflow. parse_workflow() of the result gives back the same typed
// fields. C++ callables (Node::function) cannot be written: such nodes appear as
// task nodes without a prompt.
ORCH_EXPORT Value workflow_to_definition(const Workflow& workflow);

// One problem found by validation.
struct ValidationIssue {
  std::string type;     // NullBoiler's identifier where it has one
  std::string node;     // empty when not about one node
  std::string key;      // empty when not about one key
  std::string message;
  bool warning = false; // warnings do not make a workflow invalid
};

// Every problem of a definition, errors and warnings, in this order:
//
//  1. Fatal, returned alone (NullBoiler's messages): parse_error (not JSON / not
//     an object), missing_field `nodes` / `edges` (absent or of the wrong type);
//     then orch's size caps (see WorkflowLimits): too_many_nodes (key "nodes"),
//     too_many_edges (key "edges").
//  2. Problems met while reading fields, in reading order (top-level keys,
//     state_schema, nodes in JSON order, edges): invalid_field (a value of the
//     wrong type or out of range; a warning when orch falls back to the default
//     or clamps as NullBoiler does, an error when the node cannot work: a node
//     that is not an object, transform `updates` / `store_updates` that are not
//     usable) and invalid_edge for an edge that is not an array of two strings.
//  3. invalid_node_name (':' in the name, empty, __start__/__end__) and
//     duplicate_node (builder only), node order.
//  4. unknown_node_type (node order), unknown_reducer (state_schema order).
//  5. Per edge, in edge order: invalid_edge (into __start__, out of __end__, a
//     "x:value" condition on a node that is not a route), nodes_in_edges_exist
//     (source, then target), duplicate_edge (warning).
//  6. unreachable_node (node order; send targets exempt), end_unreachable,
//     no_path_to_end (node order; only reachable nodes, not send targets nor
//     deferred nodes, and not reported together with end_unreachable),
//     unintentional_cycle (one per strongly connected set of nodes that no edge
//     leaves, so __end__ can never be reached from it; loops with any exit,
//     conditional or not, are fine).
//  7. undefined_state_key, warning (node order; prompt_template,
//     continuation_prompt, prompt, message; once per node and key): a
//     `{{state.X...}}` or `{% if state.X %}` whose top-level X is not declared,
//     checked only when a state schema is declared; __meta, __config and
//     __ui_messages are always allowed.
//  8. Route nodes, node order: per routes entry invalid_route_target (not a node
//     nor __end__) then missing_route_edge; then invalid_route_default.
//  9. Send nodes, node order: missing_send_target or invalid_send_target;
//     missing_items_key (warning: no items_key / items_from).
// 10. Subgraph nodes, node order: missing_workflow_id.
// 11. unknown_interrupt_node (an error: a breakpoint that can never pause is a
//     typo): interrupt_before, then interrupt_after entries that name no node.
ORCH_EXPORT std::vector<ValidationIssue> validate_workflow(const Value& definition,
                                                          const WorkflowLimits& limits = {});
// The same for JSON text; text that is not JSON gives parse_error "failed to
// parse workflow JSON".
ORCH_EXPORT std::vector<ValidationIssue> validate_workflow_json(std::string_view json_text,
                                                               const WorkflowLimits& limits = {});
// The size caps then the checks of steps 3-11 on a typed workflow (e.g. one
// built in C++). Fields that are not node fields of the typed workflow
// (`prompt`, non-interrupt `message`) are read from `workflow.definition` when
// it is an object.
ORCH_EXPORT std::vector<ValidationIssue> validate_workflow(const Workflow& workflow,
                                                          const WorkflowLimits& limits = {});
// True when `issues` holds no error (warnings allowed).
ORCH_EXPORT bool workflow_is_valid(const std::vector<ValidationIssue>& issues);
// "type node key: message", leaving out empty parts ("-" stands for an empty
// node when there is a key), e.g. "invalid_route_default pick default: route
// default must reference a declared routes key".
ORCH_EXPORT std::string to_string(const ValidationIssue& issue);

// Mermaid flowchart text of a definition, in NullBoiler's format (exactly, for a
// workflow without send nodes, deferred nodes or breakpoints). After the edges
// it adds, in this order: a dotted edge `SEND -.-> TARGET` per send node whose
// target_node exists; `classDef deferred ...` and `class a,b deferred` for
// deferred nodes; the same with classes `interrupt_before` / `interrupt_after`
// for breakpoints naming existing nodes.
ORCH_EXPORT std::string workflow_to_mermaid(const Value& definition);

// Builds a Workflow in C++.
//
//   orch::WorkflowBuilder b("triage");
//   b.add_function_node("classify", classify_fn)
//    .add_node(orch::route_node("pick", "state.kind", {{"bug", "fix"}, {"other", orch::kEndNode}}))
//    .add_edge(orch::kStartNode, "classify").add_edge("classify", "pick")
//    .add_conditional_edge("pick", "bug", "fix") ...;
//   auto wf = b.build();  // Result<shared_ptr<const Workflow>>, validated
class ORCH_EXPORT WorkflowBuilder {
 public:
  explicit WorkflowBuilder(std::string id = "");

  WorkflowBuilder& add_node(Node node);
  // A task node that runs `fn` in-process.
  WorkflowBuilder& add_function_node(std::string name, NodeFunction fn);
  WorkflowBuilder& add_edge(std::string_view source, std::string_view target);
  WorkflowBuilder& add_conditional_edge(std::string_view route_node, std::string_view value,
                                        std::string_view target);
  WorkflowBuilder& add_state_key(std::string name, ReducerKind reducer, bool ephemeral = false,
                                 std::string type = "");
  WorkflowBuilder& interrupt_before(std::string node);
  WorkflowBuilder& interrupt_after(std::string node);
  WorkflowBuilder& recursion_limit(int64_t limit);
  WorkflowBuilder& version(int64_t v);
  WorkflowBuilder& name(std::string value);
  // Merged under each run's config (an object).
  WorkflowBuilder& defaults(Value value);
  // "sync", "full" or "exit".
  WorkflowBuilder& durability(std::string value);

  // Validates (the same rules as validate_workflow) and returns the workflow, or
  // InvalidArgument listing every error. A route node's `routes` entries imply
  // their conditional edges: those missing are added (so a builder user need
  // not write each route twice).
  Result<std::shared_ptr<const Workflow>> build() const;

 private:
  Workflow wf_;
};

// Convenience constructors for builder nodes.
ORCH_EXPORT Node route_node(std::string name, std::string input_path,
                            std::vector<std::pair<std::string, std::string>> routes,
                            std::optional<std::string> default_route = std::nullopt);
ORCH_EXPORT Node transform_node(std::string name, Value updates);
ORCH_EXPORT Node interrupt_node(std::string name, std::string message = "");

}  // namespace orch
