// SPDX-License-Identifier: MIT
// Call routes on a shared Redis broker, and the calls adopted from other instances.
#include "workers/async/redis_call_routes.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "workers/async/async_wire.h"

namespace orch::internal {

std::string call_route_key(const std::string& call_id) { return "orch:call:" + call_id; }

std::string format_call_route(const CallRoute& route) {
  return route.owner + " " + route.origin + " " + std::to_string(route.deadline_ms);
}

std::optional<CallRoute> parse_call_route(std::string_view text) {
  if (text.size() > 200) return std::nullopt;
  const size_t first = text.find(' ');
  if (first == std::string_view::npos) return std::nullopt;
  const size_t second = text.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  CallRoute route;
  route.owner = std::string(text.substr(0, first));
  route.origin = std::string(text.substr(first + 1, second - first - 1));
  std::string_view number = text.substr(second + 1);
  if (!check_instance_name(route.owner).ok() || !check_instance_name(route.origin).ok()) return std::nullopt;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), route.deadline_ms);
  if (ec != std::errc() || end != number.data() + number.size()) return std::nullopt;
  return route;
}

void CallWatches::add(const std::string& call_id, const std::string& origin, int64_t deadline_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  watches_[call_id] = Watch{origin, deadline_ms, next_serial_++};
  while (watches_.size() > max_) {
    auto oldest = std::min_element(watches_.begin(), watches_.end(),
                                   [](const auto& a, const auto& b) { return a.second.serial < b.second.serial; });
    watches_.erase(oldest);
  }
}

void CallWatches::remove(const std::string& call_id) {
  std::lock_guard<std::mutex> lock(mu_);
  watches_.erase(call_id);
}

bool CallWatches::contains(const std::string& origin, const std::string& call_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watches_.find(call_id);
  return it != watches_.end() && it->second.origin == origin;
}

bool CallWatches::empty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return watches_.empty();
}

std::vector<std::string> CallWatches::origins(int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> found;
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (it->second.deadline_ms < now_ms) {
      it = watches_.erase(it);
    } else {
      found.insert(it->second.origin);
      ++it;
    }
  }
  return std::vector<std::string>(found.begin(), found.end());
}

}  // namespace orch::internal
