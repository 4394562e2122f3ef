// SPDX-License-Identifier: MIT
// /tracker/* routes (pull mode). Until a tracker is configured they answer
// 404 tracker_disabled, as NullBoiler does.
#include <httplib.h>

#include "http_api.h"

namespace orch::server {
namespace {

void tracker_disabled(App&, const httplib::Request&, httplib::Response& res, const Params&) {
  send_error(res, 404, "tracker_disabled", "pull-mode tracker is not configured");
}

}  // namespace

std::vector<Route> tracker_routes() {
  return {
      {"GET", "/tracker/status", tracker_disabled},
      {"GET", "/tracker/tasks", tracker_disabled},
      {"GET", "/tracker/tasks/{}", tracker_disabled},
      {"GET", "/tracker/stats", tracker_disabled},
      {"POST", "/tracker/refresh", tracker_disabled},
  };
}

}  // namespace orch::server
