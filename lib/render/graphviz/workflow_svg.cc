// SPDX-License-Identifier: MIT
//
// orch/graphviz.h: size limits first, then describe and render.
#include <unordered_map>

#include "render/graphviz/drawing.h"

namespace orch {

std::string svg_state_colour(const std::string& state) {
  static const std::unordered_map<std::string, std::string> kColours = {
      {"pending", "#eceff1"},     {"ready", "#eceff1"},     {"running", "#90caf9"},
      {"completed", "#a5d6a7"},   {"failed", "#ef9a9a"},    {"interrupted", "#ffcc80"},
      {"skipped", "#e0e0e0"},     {"cancelled", "#bdbdbd"},
  };
  auto it = kColours.find(state);
  return it == kColours.end() ? "" : it->second;
}

Result<std::string> workflow_svg(const Workflow& workflow, const SvgOptions& options) {
  if (options.max_nodes != 0 && workflow.nodes.size() > options.max_nodes) {
    return Status::invalid_argument("the workflow has " + std::to_string(workflow.nodes.size()) +
                                   " nodes; pictures are drawn for at most " + std::to_string(options.max_nodes));
  }
  auto drawing = graphviz_internal::describe_workflow(workflow, options);
  if (options.max_edges != 0 && drawing.edges.size() > options.max_edges) {
    return Status::invalid_argument("the workflow has " + std::to_string(drawing.edges.size()) +
                                   " edges; pictures are drawn for at most " + std::to_string(options.max_edges));
  }
  return graphviz_internal::render_drawing_svg(drawing);
}

}  // namespace orch
