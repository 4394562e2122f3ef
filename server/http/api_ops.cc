// SPDX-License-Identifier: MIT
// Operational routes: health, metrics, drain, tracker status, agent callbacks.
#include <httplib.h>

#include "http/http_api.h"
#include "http/openapi_document.h"
#include "worker_book.h"
#include "orch/event_kinds.h"
#include "orch/version.h"

namespace orch::server {
namespace {

void health(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  send_json(res, 200, Value::object({{"status", app.draining ? "draining" : "ok"},
                                     {"version", std::string(orch::version())},
                                     {"active_runs", static_cast<long long>(app.engine->active_runs())},
                                     {"total_workers", static_cast<long long>(app.workers->size())},
                                     {"draining", app.draining.load()}}));
}

void metrics(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  res.status = 200;
  res.set_content(app.metrics.render(app.engine->active_runs(), app.sse_clients.load()), "text/plain; version=0.0.4; charset=utf-8");
}

void openapi(App&, const httplib::Request&, httplib::Response& res, const Params&) {
  res.status = 200;
  const std::string_view doc = openapi_document();
  res.set_content(doc.data(), doc.size(), "application/json");
}

void drain(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  app.draining = true;
  send_json(res, 200, Value::object({{"status", "draining"}}));
}

void agent_event(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  if (!app.store->get_run(p[0]).ok()) return send_error(res, 404, "not_found", "run not found");
  const Value& iteration = body["iteration"];
  if (!iteration.is_null() && !iteration.is_int()) return send_error(res, 400, "bad_request", "iteration must be an integer");
  Value data = Value::object({{"run_id", p[0]},
                              {"step_id", p[1]},
                              {"iteration", static_cast<long long>(iteration.get_int(0))},
                              {"status", body["status"].get_string("running")}});
  if (body["tool"].is_string()) data.set("tool", body["tool"]);
  if (!body["args"].is_null()) data.set("args", body["args"]);
  if (body["result"].is_string()) data.set("result", body["result"]);
  EventRecord e;
  e.run_id = p[0];
  e.kind = event_kind::kAgentEvent;
  e.data = std::move(data);
  e.created_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  auto seq = app.store->append_event(e);
  if (!seq.ok()) return send_status(res, seq.status());
  app.hub.publish(e.run_id);
  send_json(res, 200, Value::object({{"ok", true}}));
}

}  // namespace

std::vector<Route> ops_routes() {
  return {
      {"GET", "/health", health},
      {"GET", "/metrics", metrics},
      {"GET", "/openapi.json", openapi},
      {"POST", "/admin/drain", drain},
      {"POST", "/internal/agent-events/{}/{}", agent_event},
  };
}

}  // namespace orch::server
