// SPDX-License-Identifier: MIT
// /tracker/* routes (pull mode), in NullBoiler's shapes (reference §2.11).
// Without a tracker every route, refresh included, answers 404
// tracker_disabled (NullBoiler's refresh answered 200 even then).
#include <httplib.h>

#include "http/http_api.h"
#include "pull/tracker.h"

namespace orch::server {
namespace {

// Answers 404 tracker_disabled and returns null when pull mode is off.
Tracker* tracker_or_404(App& app, httplib::Response& res) {
  if (!app.tracker) send_error(res, 404, "tracker_disabled", "pull-mode tracker is not configured");
  return app.tracker.get();
}

void status(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  if (Tracker* t = tracker_or_404(app, res)) send_json(res, 200, t->status_json());
}

void tasks(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  if (Tracker* t = tracker_or_404(app, res)) send_json(res, 200, t->tasks_json());
}

void task(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  Tracker* t = tracker_or_404(app, res);
  if (!t) return;
  auto found = t->task_json(p[0]);
  if (!found) return send_error(res, 404, "not_found", "task not found");
  send_json(res, 200, *found);
}

void stats(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  if (Tracker* t = tracker_or_404(app, res)) send_json(res, 200, t->stats_json());
}

void refresh(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  Tracker* t = tracker_or_404(app, res);
  if (!t) return;
  t->refresh();  // the poll thread wakes now instead of at the next interval
  send_json(res, 200, Value::object({{"status", "ok"}, {"message", "refresh requested"}}));
}

}  // namespace

std::vector<Route> tracker_routes() {
  return {
      {"GET", "/tracker/status", status},
      {"GET", "/tracker/tasks", tasks},
      {"GET", "/tracker/tasks/{}", task},
      {"GET", "/tracker/stats", stats},
      {"POST", "/tracker/refresh", refresh},
  };
}

}  // namespace orch::server
