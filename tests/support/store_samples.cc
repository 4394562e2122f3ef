// SPDX-License-Identifier: MIT
// Sample records for the database stores' tests (see store_samples.h).
#include "support/store_samples.h"

#include <utility>

namespace orch::testing {

RunRecord sample_running_run(const std::string& id) {
  RunRecord run;
  run.id = id;
  run.status = RunStatus::kRunning;
  run.input = Value::object({{"topic", "x"}});
  return run;
}

Checkpoint sample_checkpoint_of(const std::string& run_id, int64_t version, Value state) {
  Checkpoint cp;
  cp.id = run_id + "-cp" + std::to_string(version);
  cp.run_id = run_id;
  cp.parent_id = version == 0 ? "" : run_id + "-cp" + std::to_string(version - 1);
  cp.step_id = "node" + std::to_string(version);
  cp.version = version;
  cp.state = std::move(state);
  cp.metadata = Value::object({{"workflow_version", 1}});
  cp.created_at_ms = 1000 + version;
  return cp;
}

Value grown_state(const Value& previous, int step) {
  Value state = previous;
  state["items"].push_back(Value::object({{"step", step}, {"text", "result of step " + std::to_string(step)}}));
  state["step"] = step;
  return state;
}

}  // namespace orch::testing
