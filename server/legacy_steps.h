// SPDX-License-Identifier: MIT
//
// NullBoiler's legacy run format, which orch serve accepts on POST /runs: a
// DAG of steps with depends_on, converted to a graph definition so the one
// engine runs both formats. Pure function; thread-safe.
#pragma once

#include "orch/status.h"
#include "orch/value.h"

namespace orch::server {

// Converts a legacy NullBoiler `POST /runs` body (`steps[]` with `depends_on`,
// optional `strategy`) into an equivalent graph definition (JSON), so it runs.
//
// Each step becomes a node named by its id (type "agent" for agent steps, "task"
// for every other step type) keeping prompt_template, worker_tags, retry and
// timeout_ms, with output_key = the step id (declared in state_schema), so later
// steps read it as {{state.<id>}}; `{{steps.<id>.output}}` in prompts is rewritten
// to that. Edges: __start__ -> each step without depends_on, each dependency ->
// its dependent (a step with several waits for all of them), each step nothing
// depends on -> __end__. `strategy` "chain" (alias "sequential") makes each step
// depend on the previous one, "independent" (alias "parallel") leaves them
// independent; `reduce` then adds a step depending on all others.
// Bad input is InvalidArgument with NullBoiler's message (e.g. "duplicate step
// id", "depends_on references unknown step id"), plus "depends_on contains a
// cycle", "step id must not contain ':'", "step id must not be __start__ or
// __end__", "reduce must be an object" and "nested strategies are not supported".
Result<Value> legacy_steps_to_workflow(const Value& request);

}  // namespace orch::server
