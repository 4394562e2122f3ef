// SPDX-License-Identifier: MIT
//
// What a workflow's picture shows: one node per workflow node (shape by type,
// colour by state), one edge per edge, route entries that have no explicit
// conditional edge, send fan-outs, and back edges marked.
#include <functional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "render/graphviz/drawing.h"

namespace orch::graphviz_internal {
namespace {

const char* shape_of(NodeType type) {
  switch (type) {
    case NodeType::kRoute: return "diamond";
    case NodeType::kInterrupt: return "octagon";
    case NodeType::kTransform: return "ellipse";
    case NodeType::kSubgraph: return "box3d";
    case NodeType::kTask:
    case NodeType::kAgent:
    case NodeType::kSend: return "box";
  }
  return "box";
}

std::string type_text(const Node& node) {
  if (!node.unknown_type.empty()) return node.unknown_type + " (unknown type)";
  std::string text(node_type_name(node.type));
  if (node.type == NodeType::kSubgraph && !node.subgraph.workflow_id.empty()) {
    text += " \xE2\x86\x92 " + node.subgraph.workflow_id;  // "subgraph -> <workflow>"
  }
  if (node.type == NodeType::kSend && !node.send.target_node.empty()) {
    text += " \xE2\x86\x92 each item to " + node.send.target_node;
  }
  return text;
}

std::string style_of(const Node& node, bool filled, bool breakpoint) {
  std::vector<std::string> parts;
  if (node.type == NodeType::kAgent) parts.push_back("rounded");
  if (node.defer) parts.push_back("dashed");
  if (breakpoint) parts.push_back("bold");
  if (filled) parts.push_back("filled");
  std::string style;
  for (const std::string& p : parts) style += (style.empty() ? "" : ",") + p;
  return style;
}

// Edges that close a loop: found by a depth-first walk from __start__ (an
// edge into a node still on the walk's path). Keyed "source\ntarget".
std::unordered_set<std::string> back_edges(const Drawing& drawing) {
  std::unordered_map<std::string, std::vector<std::string>> out;
  for (const DrawEdge& e : drawing.edges) out[e.source].push_back(e.target);
  std::unordered_set<std::string> back;
  std::unordered_map<std::string, int> mark;  // 1: on the path, 2: done
  // Iterative, so a long chain cannot overflow the stack.
  struct Frame {
    std::string node;
    size_t next = 0;
  };
  std::vector<Frame> stack;
  auto visit = [&](const std::string& root) {
    if (mark[root] != 0) return;
    mark[root] = 1;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      Frame& top = stack.back();
      const auto& targets = out[top.node];
      if (top.next == targets.size()) {
        mark[top.node] = 2;
        stack.pop_back();
        continue;
      }
      const std::string target = targets[top.next++];
      const std::string source = top.node;
      if (mark[target] == 1) {
        back.insert(source + "\n" + target);
      } else if (mark[target] == 0) {
        mark[target] = 1;
        stack.push_back({target, 0});
      }
    }
  };
  visit(std::string(kStartNode));
  for (const DrawNode& n : drawing.nodes) visit(n.name);
  return back;
}

}  // namespace

std::string label_text(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else out += c;
  }
  return out;
}

Drawing describe_workflow(const Workflow& workflow, const SvgOptions& options) {
  Drawing d;
  auto drawn = [&](const std::string& name) { return name == kEndNode || workflow.node_index(name) >= 0; };
  const std::set<std::string> breakpoints = [&] {
    std::set<std::string> s(workflow.interrupt_before.begin(), workflow.interrupt_before.end());
    s.insert(workflow.interrupt_after.begin(), workflow.interrupt_after.end());
    return s;
  }();
  d.nodes.push_back({std::string(kStartNode), {{"shape", "circle"}, {"label", "start"}, {"width", "0.5"}}});
  for (const Node& node : workflow.nodes) {
    auto state = options.node_states.find(node.name);
    const std::string colour = state == options.node_states.end() ? "" : svg_state_colour(state->second);
    Attributes a = {{"shape", shape_of(node.type)},
                    {"label", label_text(node.name) + "\\n" + label_text(type_text(node))}};
    if (node.type == NodeType::kSend) a.push_back({"peripheries", "2"});
    const std::string style = style_of(node, !colour.empty(), breakpoints.count(node.name) > 0);
    if (!style.empty()) a.push_back({"style", style});
    if (!colour.empty()) a.push_back({"fillcolor", colour});
    if (breakpoints.count(node.name)) a.push_back({"color", "#c0392b"});
    d.nodes.push_back({node.name, std::move(a)});
  }
  d.nodes.push_back({std::string(kEndNode), {{"shape", "doublecircle"}, {"label", "end"}, {"width", "0.4"}}});

  // Conditional edges drawn so far, so route entries repeat none of them.
  std::set<std::pair<std::string, std::string>> conditional;
  for (const Edge& e : workflow.edges) {
    Attributes a;
    if (e.condition) {
      a.push_back({"label", label_text(*e.condition)});
      conditional.insert({e.source, *e.condition});
    }
    d.edges.push_back({e.source, e.target, std::move(a)});
  }
  for (const Node& node : workflow.nodes) {
    if (node.type == NodeType::kRoute) {
      for (const auto& [value, target] : node.route.routes) {
        if (conditional.count({node.name, value}) || !drawn(target)) continue;
        d.edges.push_back({node.name, target, {{"label", label_text(value)}}});
      }
      if (node.route.default_route && drawn(*node.route.default_route)) {
        d.edges.push_back({node.name, *node.route.default_route,
                           {{"label", "default"}, {"style", "dotted"}, {"constraint", "false"}}});
      }
    }
    if (node.type == NodeType::kSend && drawn(node.send.target_node)) {
      d.edges.push_back({node.name, node.send.target_node,
                         {{"label", "send (each item)"}, {"style", "dotted"}, {"arrowhead", "veevee"}}});
    }
  }
  const auto back = back_edges(d);
  for (DrawEdge& e : d.edges) {
    if (!back.count(e.source + "\n" + e.target)) continue;
    e.attributes.push_back({"color", "#8e44ad"});
    e.attributes.push_back({"fontcolor", "#8e44ad"});
    bool styled = false;
    for (const auto& [k, v] : e.attributes) styled = styled || k == "style";
    if (!styled) e.attributes.push_back({"style", "dashed"});
  }
  return d;
}

}  // namespace orch::graphviz_internal
