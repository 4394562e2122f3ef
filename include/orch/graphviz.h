// SPDX-License-Identifier: MIT
//
// orch::graphviz: a workflow drawn as an SVG picture, laid out by Graphviz's
// `dot` in-process (libgvc, libcgraph). An optional component: it exists when
// orch is built with ORCH_WITH_GRAPHVIZ (the default); without it, use
// workflow_to_mermaid() (orch/workflow.h) for a text drawing.
//
// The picture: nodes shaped by type (task: box, agent: rounded box, route:
// diamond, interrupt: octagon, send: double box, transform: ellipse,
// subgraph: 3-D box naming its workflow), __start__ and __end__ as circles,
// conditional edges labelled with their value, back edges (those that close a
// loop) drawn dashed in a second colour, a send node's fan-out dotted to its
// target, deferred nodes with a dashed border, breakpoints with a thick one.
// Each node's SVG group is <g class="node"> whose <title> is the node's name
// (XML-escaped), so a page can find a node by name and restyle it.
//
// Ownership: values in, a string out; nothing is kept between calls.
//
// Thread-safety: any thread may call workflow_svg(); Graphviz itself keeps
// global state, so calls are serialized inside (one layout at a time), which
// is why a drawing is bounded by SvgOptions::max_nodes / max_edges.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/workflow.h"

namespace orch {

struct SvgOptions {
  // Node name -> state ("pending", "ready", "running", "completed", "failed",
  // "interrupted", "skipped", "cancelled"): the node is filled with the
  // state's colour and gets the state in its tooltip. Nodes not listed are
  // drawn unfilled. Unknown states draw as unfilled too.
  std::unordered_map<std::string, std::string> node_states;
  // Drawings above these sizes are refused (InvalidArgument naming the limit)
  // instead of laid out: dot's time grows faster than linearly, and a
  // 10 000-node workflow would hold the layout lock for minutes.
  size_t max_nodes = 1000;
  size_t max_edges = 4000;
};

// The SVG document (UTF-8 text starting with "<?xml" or "<svg"). Node names,
// conditions and workflow ids appear only as escaped text, so a hostile name
// cannot add markup or script to the picture. Errors: InvalidArgument when the
// workflow is above the limits, Internal when Graphviz fails.
ORCH_EXPORT Result<std::string> workflow_svg(const Workflow& workflow, const SvgOptions& options = {});

// The fill colour workflow_svg() uses for a node state ("" for none).
ORCH_EXPORT std::string svg_state_colour(const std::string& state);

}  // namespace orch
