// SPDX-License-Identifier: MIT
//
// Workflow validation: NullBoiler's checks (same type ids and messages) with
// its mistakes fixed (route targets may be __end__; loops with an exit are
// fine) plus the checks it lacks. The order of the issues is documented at
// validate_workflow() in orch/workflow.h; each check_* below is one step.
#include <algorithm>
#include <unordered_set>

#include "orch/workflow.h"
#include "workflow/workflow_internal.h"

namespace orch {
namespace workflow_internal {
namespace {

using Issues = std::vector<ValidationIssue>;

void add(Issues* out, std::string type, std::string node, std::string key, std::string message,
         bool warning = false) {
  out->push_back({std::move(type), std::move(node), std::move(key), std::move(message), warning});
}

bool is_reserved(std::string_view name) { return name == kStartNode || name == kEndNode; }

std::string edge_text(const Edge& e) {
  std::string s = e.source;
  if (e.condition) s += ":" + *e.condition;
  return s + " -> " + e.target;
}

// Builder workflows never went through the reader, so the field checks it
// makes on JSON are repeated here for the typed values a builder can set.
void check_typed_fields(const Workflow& wf, Issues* out) {
  for (const Node& node : wf.nodes) {
    if (node.type != NodeType::kTransform) continue;
    if (!node.transform.updates.is_object()) {
      add(out, "invalid_field", node.name, "updates", "updates must be a JSON object");
    }
    const Value& store = node.transform.store_updates;
    if (!store.is_null() && !store.is_array()) {
      add(out, "invalid_field", node.name, "store_updates",
          "store_updates must be an array of entries");
    }
  }
}

void check_names(const Workflow& wf, Issues* out) {
  std::unordered_set<std::string> seen;
  for (const Node& node : wf.nodes) {
    if (node.name.empty()) {
      add(out, "invalid_node_name", node.name, "", "node name must not be empty");
    } else if (node.name.find(':') != std::string::npos) {
      add(out, "invalid_node_name", node.name, "",
          "node name must not contain ':' (edges use it for route conditions)");
    } else if (is_reserved(node.name)) {
      add(out, "invalid_node_name", node.name, "",
          "node name is reserved for the synthetic entry/exit (__start__, __end__)");
    }
    if (!seen.insert(node.name).second) {
      add(out, "duplicate_node", node.name, "", "node is defined more than once");
    }
  }
}

void check_types_and_reducers(const Workflow& wf, Issues* out) {
  for (const Node& node : wf.nodes) {
    if (node.unknown_type.empty()) continue;
    add(out, "unknown_node_type", node.name, "type",
        "unknown node type '" + node.unknown_type +
            "' (expected task, agent, route, interrupt, send, transform or subgraph)");
  }
  for (const StateKey& key : wf.state_schema) {
    if (key.unknown_reducer.empty()) continue;
    add(out, "unknown_reducer", "", key.name,
        "unknown reducer '" + key.unknown_reducer +
            "' (expected last_value, append, merge, add, min, max or add_messages)");
  }
}

void check_edges(const Workflow& wf, Issues* out) {
  auto exists = [&wf](const std::string& name) {
    return is_reserved(name) || wf.node_index(name) >= 0;
  };
  std::unordered_set<std::string> seen;
  for (const Edge& e : wf.edges) {
    std::string cond = e.condition.value_or("");
    if (e.target == kStartNode) {
      add(out, "invalid_edge", e.source, cond, "edge " + edge_text(e) + " enters __start__");
    }
    if (e.source == kEndNode) {
      add(out, "invalid_edge", e.source, cond, "edge " + edge_text(e) + " leaves __end__");
    }
    if (e.condition && exists(e.source)) {
      const Node* source = wf.find_node(e.source);
      if (source == nullptr || is_reserved(e.source) || source->type != NodeType::kRoute) {
        // Only route nodes choose a value, so this edge could never fire.
        add(out, "invalid_edge", e.source, cond,
            "conditional edge " + edge_text(e) + " needs a route node as its source");
      }
    }
    if (!exists(e.source)) {
      add(out, "nodes_in_edges_exist", e.source, "",
          "edge source node does not exist in nodes map");
    }
    if (!exists(e.target)) {
      add(out, "nodes_in_edges_exist", e.target, "",
          "edge target node does not exist in nodes map");
    }
    // '\0' cannot occur in the parts' meaning, so it separates them safely.
    std::string id = e.source + '\0' + (e.condition ? "1" + cond : "0") + '\0' + e.target;
    if (!seen.insert(id).second) {
      add(out, "duplicate_edge", e.source, cond,
          "edge " + edge_text(e) + " is listed more than once", true);
    }
  }
}

void check_graph(const Workflow& wf, Issues* out) {
  GraphFacts facts = analyze_graph(wf);
  size_t n = wf.nodes.size();
  std::vector<bool> send_target(n, false);
  for (const Node& node : wf.nodes) {
    if (node.type != NodeType::kSend) continue;
    int t = wf.node_index(node.send.target_node);
    if (t >= 0) send_target[static_cast<size_t>(t)] = true;
  }
  std::vector<bool> in_cycle(n, false);
  for (const auto& cycle : facts.closed_cycles) {
    for (int v : cycle) in_cycle[static_cast<size_t>(v)] = true;
  }
  for (size_t i = 0; i < n; ++i) {
    if (!facts.reachable[i] && !send_target[i]) {
      add(out, "unreachable_node", wf.nodes[i].name, "", "node is not reachable from __start__");
    }
  }
  if (!facts.end_reachable) {
    add(out, "end_unreachable", "", "", "__end__ is not reachable from __start__");
  } else {
    // Without a path to __end__ at all, every node would repeat that error.
    for (size_t i = 0; i < n; ++i) {
      if (facts.reachable[i] && !facts.reaches_end[i] && !send_target[i] && !wf.nodes[i].defer &&
          !in_cycle[i]) {
        add(out, "no_path_to_end", wf.nodes[i].name, "",
            "__end__ cannot be reached from this node");
      }
    }
  }
  for (const auto& cycle : facts.closed_cycles) {
    std::string names;
    for (size_t k = 0; k < cycle.size() && k < 10; ++k) {
      if (k > 0) names += ", ";
      names += wf.nodes[static_cast<size_t>(cycle[k])].name;
    }
    if (cycle.size() > 10) names += ", ...";
    add(out, "unintentional_cycle", wf.nodes[static_cast<size_t>(cycle.front())].name, "",
        "cycle detected with no way out: no edge leaves the loop through " + names +
            ", so __end__ is never reached");
  }
}

void check_state_refs(const Workflow& wf, Issues* out) {
  // NullBoiler checks only when a schema is declared: without one, any key may
  // be written at run time.
  if (wf.state_schema.empty()) return;
  const Value* raw_nodes = wf.definition.find("nodes");
  for (const Node& node : wf.nodes) {
    std::vector<std::string> texts;
    if (node.type == NodeType::kTask || node.type == NodeType::kAgent) {
      if (node.task.prompt_template) texts.push_back(*node.task.prompt_template);
      if (node.task.continuation_prompt) texts.push_back(*node.task.continuation_prompt);
    }
    if (node.type == NodeType::kInterrupt) texts.push_back(node.interrupt.message);
    // `prompt` (and `message` outside interrupt nodes) are not typed fields;
    // NullBoiler's validator reads them, so they are still checked.
    const Value* raw = raw_nodes != nullptr ? raw_nodes->find(node.name) : nullptr;
    if (raw != nullptr) {
      if (auto prompt = field_text(*raw, "prompt")) texts.push_back(*prompt);
      if (node.type != NodeType::kInterrupt) {
        if (auto message = field_text(*raw, "message")) texts.push_back(*message);
      }
    }
    std::unordered_set<std::string> reported;
    for (const std::string& text : texts) {
      for (const std::string& key : referenced_state_keys(text)) {
        if (key == "__meta" || key == "__config" || key == "__ui_messages") continue;
        if (wf.find_state_key(key) != nullptr || !reported.insert(key).second) continue;
        add(out, "undefined_state_key", node.name, key,
            "state key referenced in template is not defined in state_schema", true);
      }
    }
  }
}

void check_routes(const Workflow& wf, Issues* out) {
  std::unordered_set<std::string> conditional_edges;
  for (const Edge& e : wf.edges) {
    if (!e.condition) continue;
    conditional_edges.insert(conditional_edge_id(e.source, *e.condition, e.target));
  }
  for (const Node& node : wf.nodes) {
    if (node.type != NodeType::kRoute) continue;
    const auto& routes = node.route.routes;
    for (const auto& [value, target] : routes) {
      if (target != kEndNode && wf.find_node(target) == nullptr) {
        add(out, "invalid_route_target", node.name, value, "route target node does not exist");
      }
      if (conditional_edges.count(conditional_edge_id(node.name, value, target)) == 0) {
        add(out, "missing_route_edge", node.name, value,
            "route key is declared in routes but has no matching conditional edge");
      }
    }
    const auto& def = node.route.default_route;
    if (def && !routes.empty()) {
      bool declared = std::any_of(routes.begin(), routes.end(),
                                  [&def](const auto& entry) { return entry.first == *def; });
      if (!declared) {
        add(out, "invalid_route_default", node.name, "default",
            "route default must reference a declared routes key");
      }
    }
  }
}

void check_sends(const Workflow& wf, Issues* out) {
  for (const Node& node : wf.nodes) {
    if (node.type != NodeType::kSend) continue;
    if (node.send.target_node.empty()) {
      add(out, "missing_send_target", node.name, "target_node", "send node needs a target_node");
    } else if (wf.find_node(node.send.target_node) == nullptr) {
      add(out, "invalid_send_target", node.name, "target_node",
          "send target_node does not exist in nodes map");
    } else if (const Node* target = wf.find_node(node.send.target_node);
               target->type != NodeType::kTask && target->type != NodeType::kAgent &&
               target->type != NodeType::kSubgraph) {
      // Each item is one call of the target (a worker call or a C++ function)
      // with {{item}} bound, or one child run of a subgraph target with the
      // item in its input: route, transform, interrupt and send nodes have
      // nothing to run per item.
      add(out, "invalid_send_target_type", node.name, "target_node",
          "send target '" + target->name + "' is a " + std::string(node_type_name(target->type)) +
              " node; a send target must be a task, agent or subgraph node");
    }
    if (node.send.items_key.empty()) {
      add(out, "missing_items_key", node.name, "items_key",
          "send node has no items_key (or items_from), so it has no items to send", true);
    }
  }
}

void check_subgraphs(const Workflow& wf, Issues* out) {
  for (const Node& node : wf.nodes) {
    if (node.type == NodeType::kSubgraph && node.subgraph.workflow_id.empty()) {
      add(out, "missing_workflow_id", node.name, "workflow_id",
          "subgraph node needs a workflow_id");
    }
  }
}

void check_breakpoints(const Workflow& wf, Issues* out) {
  for (const auto* list : {&wf.interrupt_before, &wf.interrupt_after}) {
    const char* key = list == &wf.interrupt_before ? "interrupt_before" : "interrupt_after";
    for (const std::string& name : *list) {
      // An error, not a warning: a misspelt breakpoint would silently never
      // pause, and whatever it was meant to guard would run unreviewed.
      if (wf.find_node(name) == nullptr) {
        add(out, "unknown_interrupt_node", name, key,
            std::string(key) + " names a node that does not exist, so it would never pause");
      }
    }
  }
}

size_t route_target_count(const Workflow& wf) {
  size_t count = 0;
  for (const Node& node : wf.nodes) {
    if (node.type == NodeType::kRoute) count += node.route.routes.size();
  }
  return count;
}

}  // namespace

std::string conditional_edge_id(std::string_view source, std::string_view value,
                                std::string_view target) {
  // '\0' cannot occur in the parts' meaning, so it separates them safely.
  std::string id(source);
  id += '\0';
  id += value;
  id += '\0';
  id += target;
  return id;
}

std::optional<ValidationIssue> check_size(size_t nodes, size_t edges,
                                          const WorkflowLimits& limits) {
  // A cap of 0 is no cap, as for the engine's limits.
  if (limits.max_nodes != 0 && nodes > limits.max_nodes) {
    return ValidationIssue{"too_many_nodes", "", "nodes",
                           "workflow has " + std::to_string(nodes) + " nodes; at most " +
                               std::to_string(limits.max_nodes) + " are allowed",
                           false};
  }
  if (limits.max_edges != 0 && edges > limits.max_edges) {
    return ValidationIssue{"too_many_edges", "", "edges",
                           "workflow has " + std::to_string(edges) +
                               " edges (route targets included); at most " +
                               std::to_string(limits.max_edges) + " are allowed",
                           false};
  }
  return std::nullopt;
}

void check_workflow(const Workflow& wf, Issues* out) {
  check_typed_fields(wf, out);
  check_names(wf, out);
  check_types_and_reducers(wf, out);
  check_edges(wf, out);
  check_graph(wf, out);
  check_state_refs(wf, out);
  check_routes(wf, out);
  check_sends(wf, out);
  check_subgraphs(wf, out);
  check_breakpoints(wf, out);
}

}  // namespace workflow_internal

std::vector<ValidationIssue> validate_workflow(const Value& definition,
                                               const WorkflowLimits& limits) {
  std::vector<ValidationIssue> issues;
  Workflow wf;
  if (auto fatal = workflow_internal::read_definition(definition, &wf, &issues, limits)) {
    return {*fatal};
  }
  workflow_internal::check_workflow(wf, &issues);
  return issues;
}

std::vector<ValidationIssue> validate_workflow_json(std::string_view json_text,
                                                    const WorkflowLimits& limits) {
  auto parsed = parse_json(json_text);
  if (!parsed.ok()) return {{"parse_error", "", "", "failed to parse workflow JSON", false}};
  return validate_workflow(*parsed, limits);
}

std::vector<ValidationIssue> validate_workflow(const Workflow& workflow,
                                               const WorkflowLimits& limits) {
  size_t edges = workflow.edges.size() + workflow_internal::route_target_count(workflow);
  if (auto too_big = workflow_internal::check_size(workflow.nodes.size(), edges, limits)) {
    return {*too_big};
  }
  // A caller may have edited the node list since the last reindex().
  Workflow copy = workflow;
  copy.reindex();
  std::vector<ValidationIssue> issues;
  workflow_internal::check_workflow(copy, &issues);
  return issues;
}

}  // namespace orch
