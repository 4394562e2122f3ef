// SPDX-License-Identifier: MIT
//
// The built-in HTTP worker protocols: webhook, api_chat, openai_chat and a2a.
// They share one HttpTransport (connection pools and call threads).
#pragma once

#include <memory>

#include "orch/clock.h"
#include "orch/workers.h"

namespace orch::internal {

// Registers the four protocols on `registry`.
void register_http_protocols(WorkerRegistry& registry, std::shared_ptr<Clock> clock,
                             const WorkerRegistryOptions& options);

}  // namespace orch::internal
