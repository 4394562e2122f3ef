// SPDX-License-Identifier: MIT
//
// WorkflowBuilder and the node helpers: Workflows made in C++, validated with
// the same checks as JSON definitions.
#include <unordered_set>

#include "orch/workflow.h"
#include "workflow/workflow_internal.h"

namespace orch {

WorkflowBuilder::WorkflowBuilder(std::string id) { wf_.id = std::move(id); }

WorkflowBuilder& WorkflowBuilder::add_node(Node node) {
  wf_.nodes.push_back(std::move(node));
  return *this;
}

WorkflowBuilder& WorkflowBuilder::add_function_node(std::string name, NodeFunction fn) {
  Node node;
  node.name = std::move(name);
  node.type = NodeType::kTask;
  node.function = std::move(fn);
  return add_node(std::move(node));
}

WorkflowBuilder& WorkflowBuilder::add_edge(std::string_view source, std::string_view target) {
  wf_.edges.push_back(Edge{std::string(source), std::string(target), std::nullopt});
  return *this;
}

WorkflowBuilder& WorkflowBuilder::add_conditional_edge(std::string_view route_node,
                                                       std::string_view value,
                                                       std::string_view target) {
  wf_.edges.push_back(Edge{std::string(route_node), std::string(target), std::string(value)});
  return *this;
}

WorkflowBuilder& WorkflowBuilder::add_state_key(std::string name, ReducerKind reducer,
                                                bool ephemeral, std::string type) {
  StateKey key;
  key.name = std::move(name);
  key.type = std::move(type);
  key.reducer = reducer;
  key.ephemeral = ephemeral;
  wf_.state_schema.push_back(std::move(key));
  return *this;
}

WorkflowBuilder& WorkflowBuilder::interrupt_before(std::string node) {
  wf_.interrupt_before.push_back(std::move(node));
  return *this;
}

WorkflowBuilder& WorkflowBuilder::interrupt_after(std::string node) {
  wf_.interrupt_after.push_back(std::move(node));
  return *this;
}

WorkflowBuilder& WorkflowBuilder::recursion_limit(int64_t limit) {
  wf_.recursion_limit = limit;
  return *this;
}

WorkflowBuilder& WorkflowBuilder::version(int64_t v) {
  wf_.version = v;
  return *this;
}

WorkflowBuilder& WorkflowBuilder::name(std::string value) {
  wf_.name = std::move(value);
  return *this;
}

WorkflowBuilder& WorkflowBuilder::defaults(Value value) {
  wf_.defaults = std::move(value);
  return *this;
}

WorkflowBuilder& WorkflowBuilder::durability(std::string value) {
  wf_.durability = std::move(value);
  return *this;
}

Result<std::shared_ptr<const Workflow>> WorkflowBuilder::build() const {
  using workflow_internal::conditional_edge_id;
  auto wf = std::make_shared<Workflow>(wf_);
  // Route entries imply their conditional edges; those already listed are kept.
  std::unordered_set<std::string> conditional;
  for (const Edge& e : wf->edges) {
    if (e.condition) conditional.insert(conditional_edge_id(e.source, *e.condition, e.target));
  }
  for (const Node& node : wf_.nodes) {
    if (node.type != NodeType::kRoute) continue;
    for (const auto& [value, target] : node.route.routes) {
      if (conditional.insert(conditional_edge_id(node.name, value, target)).second) {
        wf->edges.push_back(Edge{node.name, target, value});
      }
    }
  }
  wf->reindex();

  // The setters take anything; the reader's checks on these top-level values
  // are repeated here so that both ways of making a workflow agree.
  std::vector<ValidationIssue> issues;
  if (wf->recursion_limit && *wf->recursion_limit < 1) {
    issues.push_back({"invalid_field", "", "recursion_limit",
                      "recursion_limit must be a positive integer", false});
  }
  if (wf->durability && !durability_from_name(*wf->durability)) {
    issues.push_back({"invalid_field", "", "durability",
                      "durability must be \"sync\", \"full\" or \"exit\"", false});
  }
  if (!wf->defaults.is_object()) {
    issues.push_back({"invalid_field", "", "defaults", "defaults must be an object", false});
  }
  for (auto& issue : validate_workflow(*wf)) issues.push_back(std::move(issue));

  std::string errors;
  for (const auto& issue : issues) {
    if (issue.warning) continue;
    errors += errors.empty() ? "workflow is invalid: " : "; ";
    errors += to_string(issue);
  }
  if (!errors.empty()) return Status::invalid_argument(std::move(errors));
  return std::shared_ptr<const Workflow>(std::move(wf));
}

Node route_node(std::string name, std::string input_path,
                std::vector<std::pair<std::string, std::string>> routes,
                std::optional<std::string> default_route) {
  Node node;
  node.name = std::move(name);
  node.type = NodeType::kRoute;
  node.route.input = std::move(input_path);
  node.route.routes = std::move(routes);
  node.route.default_route = std::move(default_route);
  return node;
}

Node transform_node(std::string name, Value updates) {
  Node node;
  node.name = std::move(name);
  node.type = NodeType::kTransform;
  // Like `updates` in JSON, a string holding a JSON object is accepted.
  if (updates.is_string()) {
    auto parsed = parse_json(updates.as_string());
    if (parsed.ok()) updates = std::move(parsed).value();
  }
  node.transform.updates = std::move(updates);
  return node;
}

Node interrupt_node(std::string name, std::string message) {
  Node node;
  node.name = std::move(name);
  node.type = NodeType::kInterrupt;
  node.interrupt.message = std::move(message);
  return node;
}

}  // namespace orch
