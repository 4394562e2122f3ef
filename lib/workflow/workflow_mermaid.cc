// SPDX-License-Identifier: MIT
//
// Mermaid flowchart of a definition. The body is byte-for-byte NullBoiler's
// (clients compare it), so it works on the raw JSON like NullBoiler does:
// names are inserted verbatim, a non-string `type` draws as task, malformed
// edges are skipped. What NullBoiler does not draw is appended after the
// edges, using only plain Mermaid syntax:
//
//   SEND -.-> TARGET                       a send node's fan-out (dotted edge)
//   classDef deferred stroke-dasharray: 5 5
//   class a,b deferred                     deferred nodes (dashed border)
//   classDef interrupt_before stroke:#e67e22,stroke-width:3px
//   class x interrupt_before               breakpoints (thick border), and the
//                                          same for interrupt_after
#include <string_view>
#include <unordered_set>

#include "orch/workflow.h"
#include "workflow/workflow_internal.h"

namespace orch {
namespace {

constexpr const char* kIndent = "    ";

std::string node_line(const std::string& name, const Value& spec) {
  const Value& t = spec["type"];
  std::string type = t.is_string() ? t.as_string() : "task";
  // "\\n" is Mermaid's line break inside a label (backslash + n in the text).
  if (type == "route") return name + "{" + name + "\\nroute}";
  if (type == "interrupt") return name + "[/" + name + "\\ninterrupt/]";
  if (type == "send") return name + "[[" + name + "\\nsend]]";
  if (type == "transform") return name + "(" + name + "\\ntransform)";
  if (type == "subgraph") return name + "[" + name + "\\nsubgraph]";
  return name + "[" + name + "\\n" + type + "]";
}

void append_class(std::string* out, const std::vector<std::string>& names, const char* cls,
                  const char* style) {
  if (names.empty()) return;
  *out += kIndent;
  *out += std::string("classDef ") + cls + " " + style + "\n";
  *out += kIndent;
  *out += "class ";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) *out += ',';
    *out += names[i];
  }
  *out += std::string(" ") + cls + "\n";
}

// Breakpoint names that are nodes, without repeats, in list order. Repeats
// are found in a set: a long list naming many nodes would be quadratic.
std::vector<std::string> breakpoint_nodes(const Value& list, const Object& nodes) {
  std::vector<std::string> names;
  if (!list.is_array()) return names;
  std::unordered_set<std::string_view> seen;
  for (const Value& item : list.as_array()) {
    if (!item.is_string() || !nodes.contains(item.as_string())) continue;
    if (seen.insert(item.as_string()).second) names.push_back(item.as_string());
  }
  return names;
}

}  // namespace

std::string workflow_to_mermaid(const Value& definition) {
  std::string out = "graph TD\n";
  const Value* nodes_value = definition.find("nodes");
  const Value* edges = definition.find("edges");
  if (nodes_value == nullptr || !nodes_value->is_object() || edges == nullptr ||
      !edges->is_array()) {
    return out;
  }
  const Object& nodes = nodes_value->as_object();
  out += kIndent;
  out += "__start__((Start))\n";
  for (const auto& [name, spec] : nodes) {
    out += kIndent;
    out += node_line(name, spec);
    out += '\n';
  }
  out += kIndent;
  out += "__end__((End))\n";
  for (const Value& e : edges->as_array()) {
    const Value* source = e.at(0);
    const Value* target = e.at(1);
    if (source == nullptr || target == nullptr || !source->is_string() || !target->is_string())
      continue;
    std::optional<std::string> condition;
    std::string_view src = workflow_internal::split_edge_source(source->as_string(), &condition);
    out += kIndent;
    out += src;
    out += condition ? " -->|" + *condition + "| " : std::string(" --> ");
    out += target->as_string();
    out += '\n';
  }

  std::vector<std::string> deferred;
  for (const auto& [name, spec] : nodes) {
    if (spec["type"].is_string() && spec["type"].as_string() == "send") {
      auto target = workflow_internal::field_text(spec, "target_node");
      if (target && nodes.contains(*target)) out += kIndent + name + " -.-> " + *target + "\n";
    }
    const Value& defer = spec["defer"];
    if (defer.is_bool() && defer.as_bool()) deferred.push_back(name);
  }
  append_class(&out, deferred, "deferred", "stroke-dasharray: 5 5");
  append_class(&out, breakpoint_nodes(definition["interrupt_before"], nodes), "interrupt_before",
               "stroke:#e67e22,stroke-width:3px");
  append_class(&out, breakpoint_nodes(definition["interrupt_after"], nodes), "interrupt_after",
               "stroke:#8e44ad,stroke-width:3px");
  return out;
}

}  // namespace orch
