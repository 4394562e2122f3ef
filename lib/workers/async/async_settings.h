// SPDX-License-Identifier: MIT
//
// AsyncSettings: AsyncWorkerOptions checked and completed (instance name,
// clock), plus what the two asynchronous protocols derive from them: reply
// topic and stream, MQTT client id, Redis consumer and pending-set key.
#pragma once

#include <memory>
#include <string>

#include "orch/async_workers.h"
#include "orch/status.h"

namespace orch::internal {

struct AsyncSettings {
  AsyncWorkerOptions options;   // clock set
  std::string instance;         // never empty
  bool durable = false;         // the instance was named (not random)

  std::string mqtt_reply_topic() const { return "orch/replies/" + instance; }
  std::string mqtt_client_id() const { return "orch-" + instance; }
  std::string mqtt_ledger_path() const;  // empty: memory only
  std::string redis_reply_stream() const { return redis_reply_stream_of(instance); }
  std::string redis_pending_key() const { return redis_pending_key_of(instance); }

  // Another instance's (shared runs: see AsyncWorkerOptions::shared_runs).
  static std::string redis_reply_stream_of(const std::string& name) { return "orch:replies:" + name; }
  static std::string redis_pending_key_of(const std::string& name) { return "orch:pending:" + name; }
};

// InvalidArgument for a bad instance name or limits.
Result<AsyncSettings> resolve_async_options(AsyncWorkerOptions options);

}  // namespace orch::internal
