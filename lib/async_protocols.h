// SPDX-License-Identifier: MIT
//
// Registers the asynchronous worker protocols (mqtt, redis_stream) that every
// WorkerRegistry comes with.
#pragma once

#include <memory>

#include "orch/clock.h"
#include "orch/workers.h"

namespace orch::internal {

// `mqtt` and `redis_stream` under a random instance name, on `clock`, with
// the registry's default call timeout. Nothing connects until a call.
void register_default_async_protocols(WorkerRegistry& registry, std::shared_ptr<Clock> clock,
                                      const WorkerRegistryOptions& options);

}  // namespace orch::internal
