// SPDX-License-Identifier: MIT
//
// The umbrella header of orch::orch: every component's public API.
#pragma once

#include "orch/async_workers.h"
#include "orch/clock.h"
#include "orch/id.h"
#include "orch/status.h"
#include "orch/value.h"
#include "orch/engine.h"
#include "orch/http_workers.h"
#include "orch/postgres_store.h"
#include "orch/state.h"
#include "orch/sqlite_store.h"
#include "orch/state_path.h"
#include "orch/store.h"
#include "orch/template.h"
#include "orch/version.h"
#include "orch/dispatcher.h"
#include "orch/worker_registry.h"
#include "orch/workflow.h"

namespace orch {

// Registers every built-in worker protocol on `registry`: webhook, api_chat,
// openai_chat and a2a (orch::http_workers), mqtt and redis_stream under a
// random instance name (orch::async_workers). Needs orch::orch, or both
// components.
inline Status register_builtin_protocols(WorkerRegistry& registry) {
  ORCH_RETURN_IF_ERROR(register_http_protocols(registry));
  return register_async_protocols(registry, AsyncWorkerOptions{});
}

}  // namespace orch
