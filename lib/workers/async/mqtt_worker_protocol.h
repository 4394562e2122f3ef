// SPDX-License-Identifier: MIT
//
// The `mqtt` worker protocol: a worker url `mqtt://host:port/topic`. A call
// publishes its request (QoS 1) to the topic with the v5 properties
// response-topic and correlation-data, and the same fields inside the JSON
// payload for v3.1.1 workers; one persistent MqttSession per broker listens on
// the reply topic and completes the waiting call its reply names. Published
// calls are recorded (once the broker acknowledged them) in a CallLedger, so
// a call dispatched again after a restart only waits for its reply.
#pragma once

#include <memory>

#include "workers/async/async_settings.h"
#include "orch/status.h"
#include "orch/worker_registry.h"

namespace orch::internal {

Result<std::shared_ptr<WorkerProtocol>> make_mqtt_protocol(const AsyncSettings& settings);

}  // namespace orch::internal
