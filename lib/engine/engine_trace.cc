// SPDX-License-Identifier: MIT
//
// The engine's tracing hooks (orch/trace.h, engine/run_trace.h): called only
// when EngineOptions::tracer is set, with the run's mutex held.
#include "engine/engine_impl.h"

namespace orch::internal {

void EngineImpl::trace_superstep(RunContext& c) {
  if (!c.trace) c.trace = std::make_unique<RunTrace>(options_.tracer, c.record, c.traceparent);
  const CompiledGraph& g = *c.compiled->graph;
  // Superstep k runs while the newest checkpoint has version k.
  c.trace->begin_superstep(c.version + 1, c.tasks.size());
  for (size_t i = 0; i < c.tasks.size(); ++i) {
    const NodeTask& t = c.tasks[i];
    const Node& node = *g.node(t.vertex);
    c.trace->begin_node(i, node.name, std::string(node_type_name(node.type)), t.attempt, t.step_id);
  }
}

void EngineImpl::end_trace(RunContext& c) {
  c.trace->end_run(c.record);
  c.trace.reset();
}

}  // namespace orch::internal
