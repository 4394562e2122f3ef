// SPDX-License-Identifier: MIT
//
// Asynchronous workers over message brokers: the `mqtt` protocol (MQTT v5,
// with v3.1.1 workers served through payload fields) and the `redis_stream`
// protocol (Redis Streams with consumer groups). A call publishes a request
// that carries a correlation id and a reply address; one listener connection
// per broker consumes the replies and completes the waiting calls. Worker
// authors: see docs/async-workers.md.
//
// Component orch::async_workers (libmosquitto, hiredis). Register both
// protocols on a WorkerRegistry before adding workers. Under a random instance
// name (the default options) replies reach only this process. For nodes that
// wait for a reply to survive an orch restart, give this orch a stable
// instance name (and, for MQTT, a state directory):
//
//   orch::AsyncWorkerOptions async;
//   async.instance = "orch-1";
//   async.state_dir = "/var/lib/orch";
//   if (auto s = orch::register_async_protocols(*registry, async); !s.ok()) ...
//
// Then the reply topic `orch/replies/orch-1` (MQTT, persistent session of
// client `orch-orch-1`) and the reply stream `orch:replies:orch-1` (Redis)
// keep replies while orch is down; a recovered run dispatches the waiting node
// again with the same call id, and the protocol waits for the reply to the
// request it already sent instead of sending it twice.
//
// Thread-safety: every function may be called from any thread; the protocols
// accept calls from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "orch/clock.h"
#include "orch/export.h"
#include "orch/status.h"
#include "orch/worker_registry.h"

namespace orch {

struct AsyncWorkerOptions {
  // Names this orch on the brokers (letters, digits, '_', '-', '.'; at most
  // 64). Stable names make waiting calls durable across restarts (persistent
  // MQTT session, a Redis consumer that keeps its pending replies). Empty: a
  // random name; replies to an earlier process are then not received.
  std::string instance;
  // MQTT: where the record of published-but-unanswered calls is kept
  // (file `mqtt-<instance>.pending`). Empty: in memory only, so a restarted
  // orch sends a waiting call's request again (same correlation id).
  std::string state_dir;
  // Redis: the consumer group that reads the reply stream.
  std::string consumer_group = "orch";
  // Redis: request streams are trimmed with XADD ... MAXLEN ~ this.
  int64_t stream_max_len = 10000;
  // Redis: replies that another consumer of the group read and left
  // unacknowledged this long (it crashed) are claimed with XAUTOCLAIM.
  int64_t redis_claim_idle_ms = 60000;
  // MQTT: how long the broker keeps this orch's session (and queues its
  // replies) while it is disconnected. Used only with a stable instance name.
  int64_t session_expiry_s = 7 * 24 * 3600;
  // Deadline of a call whose request carries none.
  int64_t default_timeout_ms = 300000;
  // A reply that matches no waiting call is kept this long: a restarted run
  // may ask for it.
  int64_t orphan_ttl_ms = 600000;
  // Records of published calls that never got a reply are dropped after this
  // long.
  int64_t pending_ttl_ms = 24 * 3600 * 1000;
  // Several orch instances share one database and take each other's runs
  // over (PostgreSQL store). Redis: every published call is then recorded on
  // the broker (key `orch:call:<correlation id>`: which instance waits for its
  // reply, on whose reply stream it will arrive, its deadline), so that the
  // instance that takes a run over waits for the reply to the request already
  // sent (reading the old instance's reply stream) instead of sending it again,
  // and an instance that gets a reply for a call another instance now owns
  // passes it on to that instance's reply stream. MQTT: the routes are
  // retained messages on `orch/calls/<encoded id>`, and every instance
  // subscribes to every instance's replies (`orch/replies/+`, so N times the
  // reply traffic), keeping those of calls it does not own as orphans for a
  // while: the instance that takes a run over finds the reply there, or gets
  // it when it comes, without sending the request again.
  bool shared_runs = false;
  // Deadlines run on this clock. Default: the registry's (register_async_protocols),
  // else Clock::system().
  std::shared_ptr<Clock> clock;
};

// The protocols alone (e.g. to register under another name). InvalidArgument
// for a bad instance name; FailedPrecondition when state_dir cannot be used.
// Nothing connects until the first call (with shared_runs: until a worker on
// that broker is attached).
ORCH_EXPORT Result<std::shared_ptr<WorkerProtocol>> new_mqtt_protocol(AsyncWorkerOptions options);
ORCH_EXPORT Result<std::shared_ptr<WorkerProtocol>> new_redis_stream_protocol(AsyncWorkerOptions options);

// Registers `mqtt` and `redis_stream` on `registry` (replacing protocols of
// those names).
ORCH_EXPORT Status register_async_protocols(WorkerRegistry& registry, AsyncWorkerOptions options);

}  // namespace orch
