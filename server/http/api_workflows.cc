// SPDX-License-Identifier: MIT
// /workflows routes: CRUD, validate, mermaid, run.
#include <httplib.h>

#include "http/http_api.h"
#include "http/json_views.h"
#include "orch/id.h"
#include "orch/workflow.h"
#include "run_start.h"

namespace orch::server {
namespace {

// The definition carried by a create/update body: `definition_json` (an object,
// or a string holding one) when present, else the body itself.
bool definition_of(const Value& body, httplib::Response& res, Value* out) {
  const Value* d = body.find("definition_json");
  if (d == nullptr) d = body.find("definition");
  if (d == nullptr) {
    *out = body;
    return true;
  }
  if (d->is_string()) {
    auto parsed = parse_json(d->as_string());
    if (!parsed.ok()) {
      send_error(res, 400, "bad_request", "definition_json is not valid JSON: " + parsed.status().message());
      return false;
    }
    *out = std::move(parsed).value();
  } else {
    *out = *d;
  }
  if (!out->is_object()) {
    send_error(res, 400, "bad_request", "definition_json must be a JSON object");
    return false;
  }
  return true;
}

Value issue_json(const ValidationIssue& i) {
  Value o = Value::object({{"type", i.type}});
  if (!i.node.empty()) o.set("node", i.node);
  if (!i.key.empty()) o.set("key", i.key);
  o.set("message", i.message);
  if (i.warning) o.set("warning", true);
  return o;
}

void create_workflow(App& app, const httplib::Request& req, httplib::Response& res, const Params&) {
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  WorkflowRecord w;
  const Value& id = body["id"];
  if (!id.is_null() && (!id.is_string() || id.as_string().empty())) {
    return send_error(res, 400, "bad_request", "id must be a non-empty string");
  }
  if (id.is_string()) {
    if (std::string problem = id_problem(id.as_string(), "id"); !problem.empty()) {
      return send_error(res, 400, "bad_request", problem);
    }
  }
  w.id = id.is_string() ? id.as_string() : new_uuid();
  w.name = body["name"].get_string("untitled");
  w.version = body["version"].get_int(1);
  if (!definition_of(body, res, &w.definition)) return;
  w.created_at_ms = w.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch()).count();
  Status s = app.store->put_workflow(w, true);
  if (s.code() == StatusCode::kAlreadyExists) return send_error(res, 409, "conflict", "workflow id already exists");
  if (!s.ok()) return send_status(res, s);
  send_json(res, 201, Value::object({{"id", w.id}, {"name", w.name}, {"version", static_cast<long long>(w.version)}}));
}

void list_workflows(App& app, const httplib::Request&, httplib::Response& res, const Params&) {
  auto list = app.store->list_workflows();
  if (!list.ok()) return send_status(res, list.status());
  Value out = Value::array();
  for (auto it = list->rbegin(); it != list->rend(); ++it) out.push_back(workflow_json(*it));  // newest first
  send_json(res, 200, out);
}

bool load_workflow(App& app, httplib::Response& res, const std::string& id, WorkflowRecord* out) {
  auto w = app.store->get_workflow(id);
  if (!w.ok()) {
    send_error(res, 404, "not_found", "workflow not found");
    return false;
  }
  *out = std::move(w).value();
  return true;
}

void get_workflow(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  WorkflowRecord w;
  if (!load_workflow(app, res, p[0], &w)) return;
  send_json(res, 200, workflow_json(w));
}

void update_workflow(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  WorkflowRecord w;
  if (!load_workflow(app, res, p[0], &w)) return;
  Value parsed;
  if (!read_json_object(req, res, &parsed)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  if (body["name"].is_string()) w.name = body["name"].as_string();  // keep the name when omitted
  if (body["version"].is_int()) w.version = body["version"].as_int();
  if (!definition_of(body, res, &w.definition)) return;
  w.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  Status s = app.store->put_workflow(w, false);
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"ok", true}}));
}

void delete_workflow(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  Status s = app.store->delete_workflow(p[0]);
  if (s.code() == StatusCode::kNotFound) return send_error(res, 404, "not_found", "workflow not found");
  if (!s.ok()) return send_status(res, s);
  send_json(res, 200, Value::object({{"ok", true}}));
}

void validate(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  WorkflowRecord w;
  if (!load_workflow(app, res, p[0], &w)) return;
  std::vector<ValidationIssue> issues = validate_workflow(w.definition);
  Value errors = Value::array();
  Value warnings = Value::array();
  for (const ValidationIssue& i : issues) (i.warning ? warnings : errors).push_back(issue_json(i));
  send_json(res, 200, Value::object({{"valid", workflow_is_valid(issues)},
                                     {"errors", errors},
                                     {"warnings", warnings},
                                     {"mermaid", workflow_to_mermaid(w.definition)}}));
}

void mermaid(App& app, const httplib::Request&, httplib::Response& res, const Params& p) {
  WorkflowRecord w;
  if (!load_workflow(app, res, p[0], &w)) return;
  res.status = 200;
  res.set_content(workflow_to_mermaid(w.definition), "text/plain; charset=utf-8");
}

void run_workflow(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  WorkflowRecord w;
  if (!load_workflow(app, res, p[0], &w)) return;
  Value parsed;
  if (!read_json_object(req, res, &parsed, true)) return;
  // Read through a const view: a mutable operator[] would insert keys.
  const Value& body = parsed;
  start_run_from_request(app, req, res, body, w.definition, w.id);
}

}  // namespace

std::vector<Route> workflow_routes() {
  return {
      {"POST", "/workflows", create_workflow},
      {"GET", "/workflows", list_workflows},
      {"GET", "/workflows/{}", get_workflow},
      {"PUT", "/workflows/{}", update_workflow},
      {"DELETE", "/workflows/{}", delete_workflow},
      {"POST", "/workflows/{}/validate", validate},
      {"GET", "/workflows/{}/mermaid", mermaid},
      {"POST", "/workflows/{}/run", run_workflow},
  };
}

}  // namespace orch::server
