// SPDX-License-Identifier: MIT
//
// Workflow names and lookups: node type and reducer names, the name indexes of
// a Workflow, and small helpers on validation issues.
#include "orch/workflow.h"

#include "workflow/workflow_internal.h"

namespace orch {
namespace {

constexpr std::pair<NodeType, std::string_view> kNodeTypeNames[] = {
    {NodeType::kTask, "task"},         {NodeType::kAgent, "agent"},
    {NodeType::kRoute, "route"},       {NodeType::kInterrupt, "interrupt"},
    {NodeType::kSend, "send"},         {NodeType::kTransform, "transform"},
    {NodeType::kSubgraph, "subgraph"},
};

constexpr std::pair<ReducerKind, std::string_view> kReducerNames[] = {
    {ReducerKind::kLastValue, "last_value"},
    {ReducerKind::kAppend, "append"},
    {ReducerKind::kMerge, "merge"},
    {ReducerKind::kAdd, "add"},
    {ReducerKind::kMin, "min"},
    {ReducerKind::kMax, "max"},
    {ReducerKind::kAddMessages, "add_messages"},
};

}  // namespace

std::string_view node_type_name(NodeType type) {
  for (const auto& [t, name] : kNodeTypeNames) {
    if (t == type) return name;
  }
  return "task";
}

std::optional<NodeType> node_type_from_name(std::string_view name) {
  for (const auto& [t, n] : kNodeTypeNames) {
    if (n == name) return t;
  }
  return std::nullopt;
}

std::string_view reducer_name(ReducerKind kind) {
  for (const auto& [k, name] : kReducerNames) {
    if (k == kind) return name;
  }
  return "last_value";
}

std::optional<ReducerKind> reducer_from_name(std::string_view name) {
  for (const auto& [k, n] : kReducerNames) {
    if (n == name) return k;
  }
  return std::nullopt;
}

const Node* Workflow::find_node(std::string_view node_name) const {
  int i = node_index(node_name);
  return i < 0 ? nullptr : &nodes[static_cast<size_t>(i)];
}

const StateKey* Workflow::find_state_key(std::string_view key_name) const {
  auto it = state_key_index_.find(std::string(key_name));
  return it == state_key_index_.end() ? nullptr : &state_schema[static_cast<size_t>(it->second)];
}

int Workflow::node_index(std::string_view node_name) const {
  auto it = node_index_.find(std::string(node_name));
  return it == node_index_.end() ? -1 : it->second;
}

void Workflow::reindex() {
  node_index_.clear();
  state_key_index_.clear();
  // emplace keeps the first of duplicate names (only a builder can make them;
  // validation reports them as duplicate_node).
  for (size_t i = 0; i < nodes.size(); ++i) node_index_.emplace(nodes[i].name, static_cast<int>(i));
  for (size_t i = 0; i < state_schema.size(); ++i) {
    state_key_index_.emplace(state_schema[i].name, static_cast<int>(i));
  }
}

bool workflow_is_valid(const std::vector<ValidationIssue>& issues) {
  for (const auto& issue : issues) {
    if (!issue.warning) return false;
  }
  return true;
}

std::string to_string(const ValidationIssue& issue) {
  std::string out = issue.type;
  if (!issue.node.empty() || !issue.key.empty()) {
    out += ' ';
    out += issue.node.empty() ? std::string("-") : issue.node;
  }
  if (!issue.key.empty()) {
    out += ' ';
    out += issue.key;
  }
  out += ": ";
  out += issue.message;
  return out;
}

namespace workflow_internal {

std::optional<std::string> field_text(const Value& object, std::string_view key) {
  const Value* v = object.find(key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (v->is_string()) return v->as_string();
  return v->to_json();
}

std::string_view split_edge_source(std::string_view source, std::optional<std::string>* condition) {
  size_t colon = source.find(':');
  if (colon == std::string_view::npos) {
    condition->reset();
    return source;
  }
  *condition = std::string(source.substr(colon + 1));
  return source.substr(0, colon);
}

}  // namespace workflow_internal

const char* durability_name(Durability durability) {
  switch (durability) {
    case Durability::kSync: return "sync";
    case Durability::kFull: return "full";
    case Durability::kExit: return "exit";
  }
  return "sync";
}

std::optional<Durability> durability_from_name(std::string_view name) {
  if (name == "sync") return Durability::kSync;
  if (name == "full") return Durability::kFull;
  if (name == "exit") return Durability::kExit;
  return std::nullopt;
}

}  // namespace orch
