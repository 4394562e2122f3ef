// SPDX-License-Identifier: MIT
// Call routes as retained MQTT messages, and what an instance heard of them.
#include "workers/async/mqtt_call_routes.h"

#include <cctype>
#include <iterator>

namespace orch::internal {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool plain(unsigned char c) { return std::isalnum(c) || c == '_' || c == '.' || c == '-'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string mqtt_route_topic(std::string_view call_id) {
  std::string topic(kMqttRoutePrefix);
  for (char ch : call_id) {
    const auto c = static_cast<unsigned char>(ch);
    if (plain(c)) {
      topic.push_back(ch);
    } else {
      topic.push_back('%');
      topic.push_back(kHex[c >> 4]);
      topic.push_back(kHex[c & 15]);
    }
  }
  return topic;
}

std::optional<std::string> call_id_of_route_topic(std::string_view topic) {
  if (topic.substr(0, kMqttRoutePrefix.size()) != kMqttRoutePrefix) return std::nullopt;
  std::string_view rest = topic.substr(kMqttRoutePrefix.size());
  if (rest.empty() || rest.size() > 3 * 512) return std::nullopt;
  std::string id;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] != '%') {
      if (!plain(static_cast<unsigned char>(rest[i]))) return std::nullopt;
      id.push_back(rest[i]);
      continue;
    }
    if (i + 2 >= rest.size()) return std::nullopt;
    const int hi = hex_value(rest[i + 1]), lo = hex_value(rest[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return id;
}

void MqttRouteBook::heard(const std::string& call_id, std::string_view payload, int64_t now_ms) {
  if (payload.empty()) {
    erase(call_id);
    return;
  }
  std::optional<CallRoute> route = parse_call_route(payload);
  if (!route) return;  // not a route: ignored
  std::lock_guard<std::mutex> lock(mu_);
  trim_locked(now_ms);
  routes_[call_id] = std::move(*route);
}

void MqttRouteBook::set(const std::string& call_id, const CallRoute& route, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  trim_locked(now_ms);
  routes_[call_id] = route;
}

void MqttRouteBook::erase(const std::string& call_id) {
  std::lock_guard<std::mutex> lock(mu_);
  routes_.erase(call_id);
}

std::optional<CallRoute> MqttRouteBook::find(const std::string& call_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = routes_.find(call_id);
  if (it == routes_.end()) return std::nullopt;
  return it->second;
}

size_t MqttRouteBook::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return routes_.size();
}

void MqttRouteBook::trim_locked(int64_t now_ms) {
  if (routes_.size() < max_) return;
  // Over the bound: drop the routes whose deadline passed, then any.
  for (auto it = routes_.begin(); it != routes_.end();) {
    it = it->second.deadline_ms < now_ms ? routes_.erase(it) : std::next(it);
  }
  // (a tenth more than needed, so that a full book is not scanned on every insert)
  while (!routes_.empty() && routes_.size() >= max_ - max_ / 10) routes_.erase(routes_.begin());
}

}  // namespace orch::internal
