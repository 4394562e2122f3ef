// SPDX-License-Identifier: MIT
// /workers and /rate-limits.
#include <httplib.h>

#include "http/http_api.h"
#include "worker_book.h"

namespace orch::server {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void add_worker(App& app, const httplib::Request& req, httplib::Response& res, const Params&) {
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  auto worker = WorkerBook::parse(parsed);
  if (!worker.ok()) return send_error(res, 400, "bad_request", worker.status().message());
  Status s = app.workers->add(*worker, "registered", now_ms());
  if (s.code() == StatusCode::kAlreadyExists) return send_error(res, 409, "conflict", "worker id already exists");
  if (!s.ok()) return send_status(res, s);
  send_json(res, 201, Value::object({{"id", worker->id}, {"status", "active"}, {"protocol", worker->protocol}}));
}

void list_workers(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  send_json(res, 200, app.workers->list_json());
}

void delete_worker(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  Status s = app.workers->remove(p[0]);
  if (s.code() == StatusCode::kNotFound) return send_error(res, 404, "not_found", "worker not found");
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"ok", true}}));
}

void rate_limits(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  Value out = Value::array();
  std::vector<WorkerRateLimit> limits = app.registry->rate_limits();
  // Instances sharing a database: their reports too, of the workers known here.
  if (app.rate_limit_share) limits = app.rate_limit_share->merged(std::move(limits));
  for (const WorkerRateLimit& r : limits) {
    if (!app.registry->get_worker(r.worker_id).ok()) continue;
    out.push_back(Value::object({{"worker_id", r.worker_id},
                                 {"remaining", static_cast<long long>(r.remaining)},
                                 {"limit", static_cast<long long>(r.limit)},
                                 {"reset_ms", static_cast<long long>(r.reset_ms)},
                                 {"updated_at_ms", static_cast<long long>(r.updated_at_ms)}}));
  }
  send_json(res, 200, out);
}

}  // namespace

std::vector<Route> worker_routes() {
  return {
      {"POST", "/workers", add_worker},
      {"GET", "/workers", list_workers},
      {"DELETE", "/workers/{}", delete_worker},
      {"GET", "/rate-limits", rate_limits},
  };
}

}  // namespace orch::server
