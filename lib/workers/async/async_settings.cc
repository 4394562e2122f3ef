// SPDX-License-Identifier: MIT
// AsyncWorkerOptions → AsyncSettings.
#include "workers/async/async_settings.h"

#include "workers/async/async_wire.h"
#include "orch/id.h"

namespace orch::internal {

std::string AsyncSettings::mqtt_ledger_path() const {
  if (!durable || options.state_dir.empty()) return "";
  std::string dir = options.state_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/mqtt-" + instance + ".pending";
}

Result<AsyncSettings> resolve_async_options(AsyncWorkerOptions options) {
  AsyncSettings s;
  if (!options.clock) options.clock = Clock::system();
  if (options.instance.empty()) {
    s.instance = "tmp-" + new_uuid().substr(0, 8) + new_uuid().substr(9, 4);
  } else {
    ORCH_RETURN_IF_ERROR(check_instance_name(options.instance));
    s.instance = options.instance;
    s.durable = true;
  }
  if (options.consumer_group.empty()) return Status::invalid_argument("consumer_group is required");
  if (options.stream_max_len < 1) return Status::invalid_argument("stream_max_len must be at least 1");
  if (options.default_timeout_ms < 1) return Status::invalid_argument("default_timeout_ms must be positive");
  if (options.redis_claim_idle_ms < 0) return Status::invalid_argument("redis_claim_idle_ms must not be negative");
  if (options.session_expiry_s < 0 || options.session_expiry_s > 0xFFFFFFFFLL) {
    return Status::invalid_argument("session_expiry_s is out of range");
  }
  s.options = std::move(options);
  return s;
}

}  // namespace orch::internal
