// SPDX-License-Identifier: MIT
#include "log/run_log.h"

#include "log/log.h"

namespace orch::server {

void log_run_event(const EventRecord& e) {
  if (e.kind.compare(0, 4, "run.") != 0) return;
  const LogLevel level = e.kind == "run.failed" ? LogLevel::kWarn : LogLevel::kInfo;
  if (!log_enabled(level)) return;
  const Value& d = e.data;
  // Whichever of these the event has; the rest stay out of the line.
  log(level, e.kind,
      {{"run_id", e.run_id},
       {"error", d["error"].is_string() ? d["error"] : Value()},
       {"reason", d["reason"].is_string() ? d["reason"] : Value()},
       {"node", d["node"].is_string() ? d["node"] : Value()},
       {"from_run_id", d["from_run_id"].is_string() ? d["from_run_id"] : Value()},
       {"checkpoint_id", d["checkpoint_id"].is_string() ? d["checkpoint_id"] : Value()}});
}

}  // namespace orch::server
