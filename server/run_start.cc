// SPDX-License-Identifier: MIT
#include "run_start.h"

#include <httplib.h>

#include "callback_check.h"
#include "callbacks.h"
#include "http/http_api.h"
#include "orch/id.h"
#include "orch/workflow.h"

namespace orch::server {
namespace {

Value issues_json(const std::vector<ValidationIssue>& issues) {
  Value list = Value::array();
  for (const ValidationIssue& i : issues) {
    if (i.warning) continue;
    Value o = Value::object({{"type", i.type}});
    if (!i.node.empty()) o.set("node", i.node);
    if (!i.key.empty()) o.set("key", i.key);
    o.set("message", i.message);
    list.push_back(std::move(o));
  }
  return list;
}

}  // namespace

void start_run_from_request(App& app, const httplib::Request& req, httplib::Response& res, const Value& body,
                            const Value& definition, const std::string& workflow_id) {
  if (app.draining) {
    return send_error(res, 503, "draining", "orchestrator is draining and does not accept new runs");
  }
  std::string key = req.get_header_value("Idempotency-Key");
  if (key.empty() && req.has_header("Idempotency-Key")) {
    return send_error(res, 400, "bad_request", "idempotency key must not be empty");
  }
  if (key.empty()) {
    const Value& k = body["idempotency_key"];
    if (!k.is_null() && !k.is_string()) return send_error(res, 400, "bad_request", "idempotency_key must be a string");
    if (k.is_string() && k.as_string().empty()) {
      return send_error(res, 400, "bad_request", "idempotency key must not be empty");
    }
    if (k.is_string()) key = k.as_string();
  }
  if (std::string problem = id_problem(key, "idempotency key"); !problem.empty()) {
    return send_error(res, 400, "bad_request", problem);
  }
  const Value& input = body["input"];
  const Value& config = body["config"];
  const Value& callbacks = body["callbacks"];
  if (!config.is_null() && !config.is_object()) return send_error(res, 400, "bad_request", "config must be an object");
  if (Status s = check_callbacks(callbacks, app.config.network); !s.ok()) {
    return send_error(res, 400, "bad_request", s.message());
  }

  auto replay_or_conflict = [&](const RunRecord& existing) {
    bool same = existing.workflow == definition && existing.workflow_id == workflow_id &&
                existing.input == (input.is_null() ? Value::object() : input);
    if (!same) return send_error(res, 409, "conflict", "idempotency key already used with different payload");
    app.metrics.runs_idempotent_replays.fetch_add(1, std::memory_order_relaxed);
    send_json(res, 200, Value::object({{"id", existing.id},
                                       {"status", std::string(run_status_name(existing.status))},
                                       {"idempotent_replay", true}}));
  };
  if (!key.empty()) {
    auto existing = app.store->find_run_by_idempotency_key(key);
    if (existing.ok()) return replay_or_conflict(*existing);
  }

  // A stored workflow's parsed form is kept (see workflow_cache.h); an
  // inline definition is parsed for its run alone.
  std::shared_ptr<const WorkflowCache::Entry> parsed =
      workflow_id.empty() ? WorkflowCache::make(definition) : app.workflows.get(workflow_id, definition);
  if (!workflow_is_valid(parsed->issues)) {
    Value err = Value::object({{"code", "bad_request"},
                               {"message", "workflow has validation errors"},
                               {"details", issues_json(parsed->issues)}});
    return send_json(res, 400, Value::object({{"error", err}}));
  }
  const auto& wf = parsed->workflow;
  if (!wf.ok()) return send_status(res, wf.status());

  RunOptions options;
  options.input = input.is_null() ? Value::object() : input;
  options.config = config.is_null() ? Value::object() : config;
  // Kept with the run for the callback sender (it reads them back after a restart).
  if (callbacks.is_array()) options.host_data = Value::object({{"callbacks", callbacks}});
  options.idempotency_key = key;
  // W3C Trace Context: the caller's trace continues into the run (a
  // malformed header is ignored there).
  options.traceparent = req.get_header_value("traceparent");
  options.workflow_id = workflow_id;
  options.run_id = new_uuid();
  // Legacy `steps` runs list every step from the start, as NullBoiler's do.
  options.plan_steps = body.find("steps") != nullptr;
  const std::string run_id = options.run_id;
  // Its events then stop at the sender's subscription (most runs have no
  // callbacks) instead of waking a sender thread to read the run back.
  if (app.callbacks) app.callbacks->expect_run(run_id, callbacks);
  auto id = app.engine->start_run(*wf, std::move(options));
  if (!id.ok()) {
    if (app.callbacks) app.callbacks->forget_run(run_id);
    if (id.status().code() == StatusCode::kAlreadyExists && !key.empty()) {
      // Lost a race with an identical request: answer as its replay.
      auto existing = app.store->find_run_by_idempotency_key(key);
      if (existing.ok()) return replay_or_conflict(*existing);
    }
    return send_status(res, id.status());
  }
  app.metrics.runs_created.fetch_add(1, std::memory_order_relaxed);
  send_json(res, 201, Value::object({{"id", *id}, {"status", "running"}, {"idempotent_replay", false}}));
}

}  // namespace orch::server
