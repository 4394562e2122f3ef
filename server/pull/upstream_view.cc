// SPDX-License-Identifier: MIT
#include "pull/upstream_view.h"

#include <algorithm>

namespace orch::server {

void apply_upstream_view_locked(TaskBoard& board, const std::vector<std::string>& terminal_stages, TrackedTask& t,
                                const Value& json) {
  const Value& latest = json["latest_run"];
  const bool have_latest = latest.is_object();
  const bool ours = have_latest && latest["id"].get_string("") == t.tracker_run_id;
  const std::string run_status = ours ? latest["status"].get_string("") : "";
  const std::string stage = json["stage"].get_string(t.claimed_stage);
  const std::string pipeline = json["pipeline_id"].get_string(t.pipeline_id);
  const Value& transitions = json["available_transitions"];
  const bool terminal = std::find(terminal_stages.begin(), terminal_stages.end(), stage) != terminal_stages.end() ||
                        (transitions.is_array() && transitions.size() == 0);
  if (ours && run_status == "completed") {
    board.abort_locked(t, Abort::kFinishedUpstream, "the task was moved to '" + stage + "' through this claim");
  } else if (ours && run_status == "failed") {
    board.abort_locked(t, Abort::kLeaseLost, "NullTickets failed this claim's run");
  } else if (pipeline != t.pipeline_id) {
    board.abort_locked(t, Abort::kCancelled, "the task moved to pipeline '" + pipeline + "' upstream");
  } else if (stage != t.claimed_stage) {
    if (!have_latest && t.execution == "subprocess" && !terminal) {
      // A NullTickets without latest_run: assume, as NullBoiler does, that
      // the agent moved the task itself.
      board.abort_locked(t, Abort::kFinishedUpstream, "the task was moved to '" + stage + "'");
    } else {
      board.abort_locked(t, Abort::kCancelled,
                         terminal ? "the task reached terminal stage '" + stage + "' upstream"
                                  : "the task moved from '" + t.claimed_stage + "' to '" + stage + "' upstream");
    }
  } else {
    t.task = json;
    t.title = json["title"].get_string(t.title);
    if (json["task_version"].is_int()) t.task_version = json["task_version"].as_int();
  }
}

}  // namespace orch::server
