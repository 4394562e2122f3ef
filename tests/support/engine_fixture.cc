// SPDX-License-Identifier: MIT
#include "support/engine_fixture.h"

#include <stdexcept>

namespace orch::testing {

Value json(const std::string& text) {
  auto v = parse_json(text);
  if (!v.ok()) throw std::runtime_error(v.status().to_string());
  return *v;
}

std::shared_ptr<const Workflow> make_workflow(const std::string& text,
                                              const std::map<std::string, NodeFunction>& functions) {
  auto parsed = parse_workflow_json(text);
  if (!parsed.ok()) throw std::runtime_error(parsed.status().to_string());
  auto wf = std::make_shared<Workflow>(**parsed);
  for (auto& node : wf->nodes) {
    auto it = functions.find(node.name);
    if (it != functions.end()) node.function = it->second;
  }
  wf->reindex();
  return wf;
}

std::unique_ptr<Engine> make_engine(std::shared_ptr<Dispatcher> dispatcher, std::shared_ptr<Clock> clock,
                                    std::shared_ptr<Store> store) {
  EngineOptions options;
  options.store = store ? store : new_memory_store();
  options.dispatcher = std::move(dispatcher);
  options.clock = std::move(clock);
  options.threads = 4;
  auto engine = Engine::open(std::move(options));
  if (!engine.ok()) throw std::runtime_error(engine.status().to_string());
  return std::move(engine).value();
}

RunRecord run_to_end(Engine& engine, std::shared_ptr<const Workflow> wf, Value input, Value config) {
  RunOptions options;
  options.input = std::move(input);
  options.config = std::move(config);
  auto id = engine.start_run(std::move(wf), std::move(options));
  if (!id.ok()) throw std::runtime_error(id.status().to_string());
  auto r = engine.wait(*id, std::chrono::seconds(10));
  if (!r.ok()) throw std::runtime_error(r.status().to_string());
  return *r;
}

}  // namespace orch::testing
