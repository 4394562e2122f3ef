// SPDX-License-Identifier: MIT
// Helpers for engine tests: workflows from JSON with C++ functions bound.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "orch/engine.h"
#include "orch/workflow.h"

namespace orch::testing {

// Parses `json` (must succeed) and binds `functions` to the named nodes.
std::shared_ptr<const Workflow> make_workflow(const std::string& json,
                                              const std::map<std::string, NodeFunction>& functions = {});

// An engine over a fresh in-memory store (or `store`).
std::unique_ptr<Engine> make_engine(std::shared_ptr<Dispatcher> dispatcher = nullptr,
                                    std::shared_ptr<Clock> clock = nullptr,
                                    std::shared_ptr<Store> store = nullptr);

// Starts a run and waits up to 10 s for it to stop.
RunRecord run_to_end(Engine& engine, std::shared_ptr<const Workflow> wf, Value input = Value::object(),
                     Value config = Value::object());

Value json(const std::string& text);

}  // namespace orch::testing
