// SPDX-License-Identifier: MIT
//
// The `redis_stream` worker protocol: a worker url `redis://host:port/stream`.
// A call adds its request to the stream (RedisPublisher); one
// RedisReplyReader per broker consumes the reply stream through a consumer
// group and completes the waiting call its reply names. Published calls are
// recorded in the broker (RedisPendingSet), so a call dispatched again after
// a restart only waits for its reply, which the stream kept meanwhile.
#pragma once

#include <memory>

#include "workers/async/async_settings.h"
#include "orch/status.h"
#include "orch/worker_registry.h"

namespace orch::internal {

Result<std::shared_ptr<WorkerProtocol>> make_redis_stream_protocol(const AsyncSettings& settings);

}  // namespace orch::internal
