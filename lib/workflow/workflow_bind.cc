// SPDX-License-Identifier: MIT
// bind_functions: C++ functions attached to the nodes of a parsed workflow.
#include <unordered_set>

#include "orch/workflow.h"

namespace orch {

Result<std::shared_ptr<const Workflow>> bind_functions(const std::shared_ptr<const Workflow>& workflow,
                                                       const NodeFunctions& functions) {
  if (!workflow) return Status::invalid_argument("bind_functions: no workflow");
  auto bound = std::make_shared<Workflow>(*workflow);
  std::unordered_set<std::string> named;
  for (const auto& [name, function] : functions) {
    if (!named.insert(name).second) return Status::invalid_argument("node " + name + " is bound twice");
    if (!function) return Status::invalid_argument("node " + name + " is bound to an empty function");
    int index = bound->node_index(name);
    if (index < 0) return Status::invalid_argument("node " + name + " is not in the workflow");
    Node& node = bound->nodes[static_cast<size_t>(index)];
    if (node.type != NodeType::kTask && node.type != NodeType::kAgent) {
      return Status::invalid_argument("node " + name + " is a " + std::string(node_type_name(node.type)) +
                                      " node; only task and agent nodes run functions");
    }
    node.function = function;
  }
  // The copy's name lookups point into its own vectors.
  bound->reindex();
  return std::shared_ptr<const Workflow>(std::move(bound));
}

}  // namespace orch
