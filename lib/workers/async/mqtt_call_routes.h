// SPDX-License-Identifier: MIT
//
// Call routes over MQTT when several orch instances share runs
// (AsyncWorkerOptions::shared_runs). MQTT has no key-value store, so each
// published call's route (redis_call_routes.h: owner, origin, deadline) is a
// retained message on `orch/calls/<encoded correlation id>` that expires a
// while after the deadline and is cleared (empty retained message) once the
// owner has the reply. Every instance subscribes to `orch/calls/+` and keeps
// what it hears in a MqttRouteBook, and to `orch/replies/+`, so it hears
// every instance's replies: the owner of a call takes the reply; the others
// keep it for a while as an orphan (AsyncCalls), for an instance that takes
// the run over later.
//
// Thread-safety: the functions are pure; MqttRouteBook may be used from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "workers/async/redis_call_routes.h"

namespace orch::internal {

inline constexpr std::string_view kMqttRoutePrefix = "orch/calls/";
inline constexpr std::string_view kMqttReplyPrefix = "orch/replies/";

// `orch/calls/<id>` with every byte outside [A-Za-z0-9_.-] as %XX (a call id
// holds '#', which a topic name must not).
std::string mqtt_route_topic(std::string_view call_id);
// The call id of a route topic; nullopt for another topic or a bad encoding.
std::optional<std::string> call_id_of_route_topic(std::string_view topic);

class MqttRouteBook {
 public:
  explicit MqttRouteBook(size_t max_routes = 100000) : max_(max_routes) {}

  // A route message: `payload` empty clears the route.
  void heard(const std::string& call_id, std::string_view payload, int64_t now_ms);
  void set(const std::string& call_id, const CallRoute& route, int64_t now_ms);
  void erase(const std::string& call_id);
  std::optional<CallRoute> find(const std::string& call_id) const;
  size_t size() const;

 private:
  void trim_locked(int64_t now_ms);

  const size_t max_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, CallRoute> routes_;
};

}  // namespace orch::internal
