// SPDX-License-Identifier: MIT
// /runs routes: create, list, inspect, control (cancel, retry, resume, fork,
// replay, state injection), delete.
#include <httplib.h>

#include <algorithm>

#include "http/http_api.h"
#include "run_commands.h"
#include "http/json_views.h"
#include "legacy_steps.h"
#include "run_start.h"

namespace orch::server {
namespace {

// Reads the run or answers 404.
bool load_run(App& app, httplib::Response& res, const std::string& id, RunRecord* out) {
  auto r = app.engine->get_run(id);
  if (!r.ok()) {
    send_error(res, 404, "not_found", "run not found");
    return false;
  }
  *out = std::move(r).value();
  return true;
}

int64_t query_int(const httplib::Request& req, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') return fallback;
  return std::clamp<int64_t>(n, lo, hi);
}

void create_run(App& app, const httplib::Request& req, httplib::Response& res, const Params&) {
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  int shapes = (body.find("workflow") != nullptr ? 1 : 0) + (body.find("workflow_id") != nullptr ? 1 : 0) +
               (body.find("steps") != nullptr ? 1 : 0);
  if (shapes == 0) {
    return send_error(res, 400, "bad_request", "missing required field: workflow, workflow_id or steps");
  }
  if (shapes > 1) {
    return send_error(res, 400, "bad_request", "give only one of workflow, workflow_id or steps");
  }
  if (const Value* wf = body.find("workflow")) {
    if (!wf->is_object()) return send_error(res, 400, "bad_request", "workflow must be an object");
    return start_run_from_request(app, req, res, body, *wf, "");
  }
  if (const Value* id = body.find("workflow_id")) {
    if (!id->is_string() || id->as_string().empty()) {
      return send_error(res, 400, "bad_request", "workflow_id must be a non-empty string");
    }
    auto stored = app.store->get_workflow(id->as_string());
    if (!stored.ok()) return send_error(res, 404, "not_found", "workflow not found");
    return start_run_from_request(app, req, res, body, stored->definition, stored->id);
  }
  auto graph = legacy_steps_to_workflow(body);
  if (!graph.ok()) return send_error(res, 400, "bad_request", graph.status().message());
  start_run_from_request(app, req, res, body, *graph, "");
}

void list_runs(App& app, const httplib::Request& req, httplib::Response& res, const Params&) {
  RunFilter filter;
  if (req.has_param("status")) {
    auto s = run_status_from_name(req.get_param_value("status"));
    if (!s) return send_error(res, 400, "bad_request", "unknown status '" + req.get_param_value("status") + "'");
    filter.status = s;
  }
  filter.workflow_id = req.get_param_value("workflow_id");
  int64_t limit = query_int(req, "limit", 100, 1, 1000);
  int64_t offset = query_int(req, "offset", 0, 0, 1000000000);
  filter.limit = static_cast<size_t>(limit + 1);
  filter.offset = static_cast<size_t>(offset);
  auto runs = app.store->list_runs(filter);
  if (!runs.ok()) return send_status(res, runs.status());
  bool has_more = runs->size() > static_cast<size_t>(limit);
  if (has_more) runs->pop_back();
  Value items = Value::array();
  for (const RunRecord& r : *runs) {
    auto live = app.engine->get_run(r.id);
    items.push_back(run_summary_json(live.ok() ? *live : r));
  }
  int64_t next = has_more ? offset + limit : offset + static_cast<int64_t>(runs->size());
  send_json(res, 200, Value::object({{"items", items}, {"limit", static_cast<long long>(limit)},
                                     {"offset", static_cast<long long>(offset)}, {"next_offset", static_cast<long long>(next)},
                                     {"has_more", has_more}}));
}

void get_run(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  auto steps = app.store->list_steps(r.id);
  auto cps = app.store->list_checkpoints(r.id);
  send_json(res, 200, run_json(r, steps.ok() ? *steps : std::vector<StepRecord>{},
                               cps.ok() ? static_cast<int64_t>(cps->size()) : 0));
}

void delete_run(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  Status s = app.commands->run({"delete", r.id});
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"ok", true}}));
}

void cancel_run(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  if (is_terminal(r.status)) {
    return send_error(res, 409, "conflict", "run is already " + std::string(run_status_name(r.status)));
  }
  Status s = app.commands->run({"cancel", r.id});
  if (!s.ok()) return send_status(res, s);
  app.metrics.runs_cancelled.fetch_add(1, std::memory_order_relaxed);
  send_json(res, 200, Value::object({{"id", r.id}, {"status", "cancelled"}}));
}

void retry_run(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  if (r.status != RunStatus::kFailed) {
    return send_error(res, 409, "conflict", "run is not failed (current: " + std::string(run_status_name(r.status)) + ")");
  }
  Status s = app.commands->run({"retry", r.id});
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"id", r.id}, {"status", "running"}}));
}

void resume_run(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  Value parsed;
  if (!read_json_object(req, res, &parsed, true)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  if (r.status != RunStatus::kInterrupted) {
    return send_error(res, 409, "conflict", "run is not interrupted (current: " + std::string(run_status_name(r.status)) + ")");
  }
  const Value& updates = body["state_updates"];
  if (!updates.is_null() && !updates.is_object()) {
    return send_error(res, 400, "bad_request", "state_updates must be an object");
  }
  Status s = app.commands->run({"resume", r.id, Value::object({{"state_updates", updates}})});
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"id", r.id}, {"status", "running"}}));
}

void fork_run(App& app, const httplib::Request& req, httplib::Response& res, const Params&) {
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  if (app.draining) return send_error(res, 503, "draining", "orchestrator is draining and does not accept new runs");
  const Value& cp = body["checkpoint_id"];
  if (!cp.is_string() || cp.as_string().empty()) {
    return send_error(res, 400, "bad_request", "missing required field: checkpoint_id");
  }
  const Value& overrides = body["state_overrides"];
  if (!overrides.is_null() && !overrides.is_object()) {
    return send_error(res, 400, "bad_request", "state_overrides must be an object");
  }
  if (!app.store->get_checkpoint(cp.as_string()).ok()) return send_error(res, 404, "not_found", "checkpoint not found");
  auto id = app.engine->fork_run(cp.as_string(), overrides);
  if (!id.ok()) return send_status(res, id.status());
  app.metrics.runs_created.fetch_add(1, std::memory_order_relaxed);
  send_json(res, 201, Value::object({{"id", *id}, {"status", "running"}, {"forked_from_checkpoint", cp}}));
}

void inject_state(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  const Value& updates = body["updates"];
  if (updates.is_null()) return send_error(res, 400, "bad_request", "missing required field: updates");
  if (!updates.is_object()) return send_error(res, 400, "bad_request", "updates must be an object");
  const Value& after = body["apply_after_step"];
  if (!after.is_null() && !after.is_string()) return send_error(res, 400, "bad_request", "apply_after_step must be a string");
  Status s = app.commands->run({"inject", r.id, Value::object({{"updates", updates}, {"apply_after_step", after}})});
  if (!s.ok()) return send_status(res, s);
  if (after.is_string()) return send_json(res, 200, Value::object({{"applied", false}, {"pending", true}}));
  send_json(res, 200, Value::object({{"applied", true}}));
}

void replay_run(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  Value cp = body["from_checkpoint_id"];
  if (!cp.is_string()) cp = body["checkpoint_id"];
  if (!cp.is_string() || cp.as_string().empty()) {
    return send_error(res, 400, "bad_request", "missing required field: from_checkpoint_id or checkpoint_id");
  }
  auto checkpoint = app.store->get_checkpoint(cp.as_string());
  if (!checkpoint.ok()) return send_error(res, 404, "not_found", "checkpoint not found");
  if (checkpoint->run_id != p[0]) return send_error(res, 400, "bad_request", "checkpoint does not belong to this run");
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  Status s = app.commands->run({"replay", r.id, Value::object({{"checkpoint_id", cp}})});
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"id", r.id}, {"status", "running"}, {"replayed_from_checkpoint", cp}}));
}

void list_steps(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  auto steps = app.store->list_steps(r.id);
  if (!steps.ok()) return send_status(res, steps.status());
  Value list = Value::array();
  for (const StepRecord& s : *steps) list.push_back(step_json(s));
  send_json(res, 200, list);
}

void get_step(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  auto step = app.store->get_step(p[1]);
  if (!step.ok() || step->run_id != p[0]) return send_error(res, 404, "not_found", "step not found");
  send_json(res, 200, step_json(*step));
}

void list_events(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  int64_t after = query_int(req, "after_seq", 0, 0, INT64_MAX);
  int64_t limit = query_int(req, "limit", 10000, 1, 10000);
  // One more than asked says whether another page follows (its cursor in
  // X-Next-After-Seq); the body stays NullBoiler's array.
  auto events = app.store->list_events(r.id, after, static_cast<size_t>(limit) + 1);
  if (!events.ok()) return send_status(res, events.status());
  if (events->size() > static_cast<size_t>(limit)) {
    events->pop_back();
    res.set_header("X-Next-After-Seq", std::to_string(events->back().seq));
  }
  Value list = Value::array();
  for (const EventRecord& e : *events) list.push_back(event_json(e));
  send_json(res, 200, list);
}

// Pages of a run's checkpoints: `limit` (default and most 1000) from the one
// after version `after_version`; X-Next-After-Version names the next page's
// cursor while there is one. The body stays NullBoiler's array.
void list_checkpoints(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  RunRecord r;
  if (!load_run(app, res, p[0], &r)) return;
  // (-1, the default: from the first, __init__ at version 0.)
  const int64_t after = query_int(req, "after_version", -1, -1, INT64_MAX);
  const size_t limit = static_cast<size_t>(query_int(req, "limit", 1000, 1, 1000));
  auto cps = app.store->list_checkpoints(r.id);
  if (!cps.ok()) return send_status(res, cps.status());
  Value list = Value::array();
  auto completed = cumulative_completed(*cps);
  for (size_t i = 0; i < cps->size(); ++i) {
    if ((*cps)[i].version <= after) continue;
    if (list.size() == limit) {
      res.set_header("X-Next-After-Version", std::to_string((*cps)[i - 1].version));
      break;
    }
    list.push_back(checkpoint_json((*cps)[i], completed[i]));
  }
  send_json(res, 200, list);
}

void get_checkpoint(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  auto cp = app.store->get_checkpoint(p[1]);
  if (!cp.ok() || cp->run_id != p[0]) return send_error(res, 404, "not_found", "checkpoint not found");
  auto all = app.store->list_checkpoints(p[0]);
  if (!all.ok()) return send_status(res, all.status());
  auto completed = cumulative_completed(*all);
  for (size_t i = 0; i < all->size(); ++i) {
    if ((*all)[i].id == cp->id) return send_json(res, 200, checkpoint_json(*cp, completed[i]));
  }
  send_error(res, 404, "not_found", "checkpoint not found");
}

}  // namespace

std::vector<Route> run_routes() {
  return {
      {"POST", "/runs", create_run},
      {"GET", "/runs", list_runs},
      {"POST", "/runs/fork", fork_run},
      {"GET", "/runs/{}", get_run},
      {"DELETE", "/runs/{}", delete_run},
      {"POST", "/runs/{}/cancel", cancel_run},
      {"POST", "/runs/{}/retry", retry_run},
      {"POST", "/runs/{}/resume", resume_run},
      {"POST", "/runs/{}/state", inject_state},
      {"POST", "/runs/{}/replay", replay_run},
      {"GET", "/runs/{}/steps", list_steps},
      {"GET", "/runs/{}/steps/{}", get_step},
      {"GET", "/runs/{}/events", list_events},
      {"GET", "/runs/{}/checkpoints", list_checkpoints},
      {"GET", "/runs/{}/checkpoints/{}", get_checkpoint},
  };
}

}  // namespace orch::server
