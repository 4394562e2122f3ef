// SPDX-License-Identifier: MIT
// The public entry points of the asynchronous worker protocols.
#include "workers/async/async_settings.h"
#include "workers/async/mqtt_worker_protocol.h"
#include "orch/async_workers.h"
#include "workers/async/redis_stream_protocol.h"

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
  if (!options.clock) options.clock = registry.options().clock;
  ORCH_ASSIGN_OR_RETURN(internal::AsyncSettings settings, internal::resolve_async_options(std::move(options)));
  ORCH_ASSIGN_OR_RETURN(std::shared_ptr<WorkerProtocol> mqtt, internal::make_mqtt_protocol(settings));
  ORCH_ASSIGN_OR_RETURN(std::shared_ptr<WorkerProtocol> redis, internal::make_redis_stream_protocol(settings));
  ORCH_RETURN_IF_ERROR(registry.register_protocol("mqtt", std::move(mqtt)));
  return registry.register_protocol("redis_stream", std::move(redis));
}
}  // namespace orch
