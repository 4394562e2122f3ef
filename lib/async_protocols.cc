// SPDX-License-Identifier: MIT
// The public entry points of the asynchronous worker protocols.
#include "async_protocols.h"

#include "async_settings.h"
#include "mqtt_worker_protocol.h"
#include "orch/async_workers.h"
#include "redis_stream_protocol.h"

namespace orch {

Result<std::shared_ptr<WorkerProtocol>> new_mqtt_protocol(AsyncWorkerOptions options) {
  ORCH_ASSIGN_OR_RETURN(internal::AsyncSettings settings, internal::resolve_async_options(std::move(options)));
  return internal::make_mqtt_protocol(settings);
}

Result<std::shared_ptr<WorkerProtocol>> new_redis_stream_protocol(AsyncWorkerOptions options) {
  ORCH_ASSIGN_OR_RETURN(internal::AsyncSettings settings, internal::resolve_async_options(std::move(options)));
  return internal::make_redis_stream_protocol(settings);
}

Status register_async_protocols(WorkerRegistry& registry, AsyncWorkerOptions options) {
  ORCH_ASSIGN_OR_RETURN(internal::AsyncSettings settings, internal::resolve_async_options(std::move(options)));
  ORCH_ASSIGN_OR_RETURN(std::shared_ptr<WorkerProtocol> mqtt, internal::make_mqtt_protocol(settings));
  ORCH_ASSIGN_OR_RETURN(std::shared_ptr<WorkerProtocol> redis, internal::make_redis_stream_protocol(settings));
  ORCH_RETURN_IF_ERROR(registry.register_protocol("mqtt", std::move(mqtt)));
  return registry.register_protocol("redis_stream", std::move(redis));
}

namespace internal {

void register_default_async_protocols(WorkerRegistry& registry, std::shared_ptr<Clock> clock,
                                      const WorkerRegistryOptions& options) {
  AsyncWorkerOptions async;
  async.clock = std::move(clock);
  if (options.default_timeout_ms > 0) async.default_timeout_ms = options.default_timeout_ms;
  // A random instance name and no state directory: cannot fail.
  (void)register_async_protocols(registry, std::move(async));
}

}  // namespace internal
}  // namespace orch
