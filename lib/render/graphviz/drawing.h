// SPDX-License-Identifier: MIT
//
// A drawing: the nodes and edges of a picture with their Graphviz attributes,
// built from a Workflow by describe_workflow() (what to draw) and laid out by
// render_drawing_svg() (how, with Graphviz). The split keeps Graphviz's C API
// in one file and the drawing rules testable without it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "orch/graphviz.h"
#include "orch/status.h"
#include "orch/workflow.h"

namespace orch::graphviz_internal {

using Attributes = std::vector<std::pair<std::string, std::string>>;

struct DrawNode {
  std::string name;  // the node's name: Graphviz writes it as the SVG <title>
  Attributes attributes;
};

struct DrawEdge {
  std::string source;
  std::string target;
  Attributes attributes;
};

struct Drawing {
  std::vector<DrawNode> nodes;
  std::vector<DrawEdge> edges;
};

// What to draw for `workflow` (see orch/graphviz.h for the look). Labels are
// escaped for Graphviz (a backslash in a name stays a backslash).
Drawing describe_workflow(const Workflow& workflow, const SvgOptions& options);

// Graphviz label text for `text`: escape sequences (\N, \n, \l, ...) are
// neutralized by doubling each backslash.
std::string label_text(const std::string& text);

// Lays `drawing` out with dot and renders SVG. Serialized: one at a time.
Result<std::string> render_drawing_svg(const Drawing& drawing);

}  // namespace orch::graphviz_internal
