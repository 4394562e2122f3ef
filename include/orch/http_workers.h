// SPDX-License-Identifier: MIT
//
// The HTTP worker protocols (component orch::http_workers): `webhook`,
// `api_chat`, `openai_chat` and `a2a` (wire formats: docs/workers.md). A call
// is a blocking HTTP request on a bounded pool of call threads, over pooled
// keep-alive connections, with the call's deadline; a cancelled call has its
// socket shut down.
//
//   auto workers = std::make_shared<orch::WorkerRegistry>();
//   if (auto s = orch::register_http_protocols(*workers); !s.ok()) ...
//
// The four protocols share one connection pool and one set of call threads,
// owned by the protocols (so by the registry that holds them).
//
// Thread-safety: register before the registry is in use; the protocols accept
// calls from many threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "orch/clock.h"
#include "orch/export.h"
#include "orch/host_policy.h"
#include "orch/status.h"
#include "orch/worker_registry.h"

namespace orch {

struct HttpWorkerOptions {
  // Upper bound of the threads that carry blocking HTTP calls (started on
  // demand), so of the HTTP calls in flight at once. Calls beyond it wait for
  // a free thread. A model call takes seconds: with many runs in flight, a
  // low bound queues calls that workers could already be serving.
  size_t max_call_threads = 256;
  // Idle keep-alive connections kept per worker origin (beyond it, a call's
  // connection closes after it, and a later call connects anew).
  size_t max_idle_connections = 64;
  // Deadline of a call whose request carries none. Unset: the registry's
  // default_timeout_ms.
  std::optional<int64_t> default_timeout_ms;
  // Hosts the protocols may connect to, checked (names resolved) before each
  // new connection. Unset: the registry's host_policy.
  std::optional<HostPolicy> host_policy;
  // Deadlines run on this clock. Default: the registry's.
  std::shared_ptr<Clock> clock;
};

// Registers the four protocols on `registry` (replacing protocols of those
// names). Nothing connects until a call.
ORCH_EXPORT Status register_http_protocols(WorkerRegistry& registry, HttpWorkerOptions options = {});

}  // namespace orch
