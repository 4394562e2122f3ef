// SPDX-License-Identifier: MIT
//
// The only file that speaks Graphviz's C API: a Drawing becomes a cgraph
// graph (built with calls, never parsed from DOT text, so no name can inject
// DOT syntax), dot lays it out and the core SVG renderer writes it.
//
// Graphviz keeps global state (its error handler, the attribute
// dictionaries' defaults), so every call holds one lock; the context, whose
// creation loads the plugins, is made once and kept.
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <mutex>

#include "render/graphviz/drawing.h"

namespace orch::graphviz_internal {
namespace {

std::mutex& graphviz_lock() {
  static std::mutex lock;
  return lock;
}

// Graphviz prints warnings and errors on stderr unless given a handler; the
// last one is kept to explain a failure.
std::string& last_graphviz_message() {
  static std::string message;
  return message;
}

int keep_graphviz_message(char* text) {
  last_graphviz_message() = text == nullptr ? "" : text;
  return 0;
}

// cgraph's functions take char* for strings they do not modify.
char* text(const std::string& s) { return const_cast<char*>(s.c_str()); }

void set_attributes(void* object, const Attributes& attributes) {
  for (const auto& [name, value] : attributes) agsafeset(object, text(name), text(value), text(""));
}

// Graph-wide look: top to bottom, one font, readable spacing.
void set_defaults(Agraph_t* g) {
  agattr(g, AGRAPH, text("rankdir"), text("TB"));
  agattr(g, AGRAPH, text("nodesep"), text("0.35"));
  agattr(g, AGRAPH, text("ranksep"), text("0.45"));
  agattr(g, AGRAPH, text("bgcolor"), text("transparent"));
  agattr(g, AGNODE, text("fontname"), text("Helvetica"));
  agattr(g, AGNODE, text("fontsize"), text("11"));
  agattr(g, AGNODE, text("margin"), text("0.12,0.05"));
  agattr(g, AGEDGE, text("fontname"), text("Helvetica"));
  agattr(g, AGEDGE, text("fontsize"), text("10"));
}

struct GraphCloser {
  GVC_t* gvc;
  Agraph_t* g;
  bool laid_out = false;
  ~GraphCloser() {
    if (laid_out) gvFreeLayout(gvc, g);
    agclose(g);
  }
};

}  // namespace

Result<std::string> render_drawing_svg(const Drawing& drawing) {
  std::lock_guard<std::mutex> hold(graphviz_lock());
  static GVC_t* gvc = [] {
    agseterrf(keep_graphviz_message);
    agseterr(AGERR);  // warnings are not failures
    return gvContext();
  }();
  if (gvc == nullptr) return Status::internal("Graphviz could not start (gvContext failed)");
  last_graphviz_message().clear();

  Agraph_t* g = agopen(text("workflow"), Agdirected, nullptr);
  if (g == nullptr) return Status::internal("Graphviz could not create a graph");
  GraphCloser closer{gvc, g};
  set_defaults(g);
  for (const DrawNode& n : drawing.nodes) {
    Agnode_t* node = agnode(g, text(n.name), 1);
    set_attributes(node, n.attributes);
  }
  for (const DrawEdge& e : drawing.edges) {
    Agnode_t* source = agnode(g, text(e.source), 1);
    Agnode_t* target = agnode(g, text(e.target), 1);
    // Anonymous edges: two edges between the same nodes are both drawn.
    Agedge_t* edge = agedge(g, source, target, nullptr, 1);
    set_attributes(edge, e.attributes);
  }
  if (gvLayout(gvc, g, "dot") != 0) {
    return Status::internal("Graphviz could not lay the graph out: " + last_graphviz_message());
  }
  closer.laid_out = true;
  char* data = nullptr;
  unsigned int length = 0;
  if (gvRenderData(gvc, g, "svg", &data, &length) != 0 || data == nullptr) {
    if (data != nullptr) gvFreeRenderData(data);
    return Status::internal("Graphviz could not render SVG: " + last_graphviz_message());
  }
  std::string svg(data, length);
  gvFreeRenderData(data);
  return svg;
}

}  // namespace orch::graphviz_internal
