// SPDX-License-Identifier: MIT
//
// The HTTP worker protocols (component orch::http_workers): `webhook`,
// `api_chat`, `openai_chat` and `a2a` (wire formats: docs/workers.md). A call
// to an http:// worker is event-driven: a few loop threads carry every call in
// flight, over pooled keep-alive connections, each with the call's deadline as
// a timer; the reply is parsed there and handed to the engine's `done` on the
// same loop thread, in a ReplyScope marked as an event loop (the engine
// handles it there when its store writes without waiting, else on its own
// threads). A call to an https:// worker, and a health probe, is a blocking
// request on a bounded pool of call threads. A cancelled call has its
// connection closed. A worker's reply may carry up to 64 KiB of headers (100
// of them) and 16 MiB of body; beyond that the call fails, not retried.
//
//   auto workers = std::make_shared<orch::WorkerRegistry>();
//   if (auto s = orch::register_http_protocols(*workers); !s.ok()) ...
//
// The four protocols share their connection pools, loop and call threads,
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
  // Threads running the event loop of http:// calls: they move bytes, parse
  // replies and hand them on (see above), and never wait on a commit.
  size_t io_threads = 2;
  // Upper bound of the call threads (started on demand) that carry blocking
  // https:// calls and health probes. Beyond the bound, they wait for a free
  // thread. A model call takes seconds: with many runs in flight, a low bound
  // queues https calls that workers could already be serving.
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
