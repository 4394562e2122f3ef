// SPDX-License-Identifier: MIT
// Graph pictures: GET /workflows/{id}/graph.svg and GET /runs/{id}/graph.svg
// (nodes filled by the state of their latest step), drawn by orch::graphviz.
// Built without it (ORCH_WITH_GRAPHVIZ=OFF), both answer 501 and point at
// the Mermaid text, which the console shows instead.
#include <httplib.h>

#include "http/http_api.h"
#include "orch/workflow.h"
#if ORCH_HAS_GRAPHVIZ
#include "orch/graphviz.h"
#endif

namespace orch::server {
namespace {

// The picture, or an error answered on `res`.
void send_svg(httplib::Response& res, const Value& definition,
              const std::unordered_map<std::string, std::string>& node_states) {
  // Checked first, without Graphviz: the definition may be huge.
  auto workflow = parse_workflow(definition);
  if (!workflow.ok()) return send_error(res, 422, "invalid_workflow", workflow.status().message());
#if ORCH_HAS_GRAPHVIZ
  SvgOptions options;
  options.node_states = node_states;
  auto svg = workflow_svg(**workflow, options);
  if (!svg.ok() && svg.status().code() == StatusCode::kInvalidArgument) {
    return send_error(res, 422, "graph_too_large", svg.status().message());
  }
  if (!svg.ok()) return send_status(res, svg.status());
  res.status = 200;
  // Opened on its own, the picture may run nothing and load nothing.
  res.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Cache-Control", "no-store");
  res.set_content(*svg, "image/svg+xml; charset=utf-8");
#else
  (void)node_states;
  send_error(res, 501, "unimplemented",
             "this orch was built without Graphviz (ORCH_WITH_GRAPHVIZ=OFF); "
             "GET /workflows/{id}/mermaid has the graph as Mermaid text");
#endif
}

void workflow_graph(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  auto w = app.store->get_workflow(p[0]);
  if (!w.ok()) return send_error(res, 404, "not_found", "workflow not found");
  send_svg(res, w->definition, {});
}

void run_graph(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  auto run = app.engine->get_run(p[0]);
  if (!run.ok()) return send_error(res, 404, "not_found", "run not found");
  if (!run->workflow.is_object()) {
    return send_error(res, 404, "not_found", "the run has no workflow definition to draw (built in C++)");
  }
  std::unordered_map<std::string, std::string> states;
  auto steps = app.store->list_steps(run->id);
  if (steps.ok()) {
    // Steps come oldest first: a node's latest step decides its colour.
    for (const StepRecord& s : *steps) states[s.node_name] = std::string(step_status_name(s.status));
  }
  send_svg(res, run->workflow, states);
}

}  // namespace

std::vector<Route> graph_routes() {
  return {
      {"GET", "/workflows/{}/graph.svg", workflow_graph},
      {"GET", "/runs/{}/graph.svg", run_graph},
  };
}

}  // namespace orch::server
