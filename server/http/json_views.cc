// SPDX-License-Identifier: MIT
#include "http/json_views.h"

#include <algorithm>

namespace orch::server {
namespace {
void set_if(Value* o, const char* key, const std::string& v) {
  if (!v.empty()) o->set(key, v);
}
void set_if(Value* o, const char* key, int64_t v) {
  if (v != 0) o->set(key, static_cast<long long>(v));
}
}  // namespace

Value run_summary_json(const RunRecord& r) {
  Value o = Value::object({{"id", r.id}, {"status", std::string(run_status_name(r.status))}});
  set_if(&o, "idempotency_key", r.idempotency_key);
  set_if(&o, "workflow_id", r.workflow_id);
  o.set("created_at_ms", static_cast<long long>(r.created_at_ms));
  o.set("updated_at_ms", static_cast<long long>(r.updated_at_ms));
  set_if(&o, "parent_run_id", r.parent_run_id);
  return o;
}

Value run_json(const RunRecord& r, const std::vector<StepRecord>& steps, int64_t checkpoint_count) {
  Value o = Value::object({{"id", r.id}, {"status", std::string(run_status_name(r.status))}});
  set_if(&o, "idempotency_key", r.idempotency_key);
  o.set("created_at_ms", static_cast<long long>(r.created_at_ms));
  o.set("updated_at_ms", static_cast<long long>(r.updated_at_ms));
  set_if(&o, "workflow_id", r.workflow_id);
  set_if(&o, "error_text", r.error);
  set_if(&o, "started_at_ms", r.started_at_ms);
  set_if(&o, "ended_at_ms", r.ended_at_ms);
  o.set("state_json", r.state);
  o.set("checkpoint_count", static_cast<long long>(checkpoint_count));
  o.set("total_input_tokens", static_cast<long long>(r.input_tokens));
  o.set("total_output_tokens", static_cast<long long>(r.output_tokens));
  o.set("total_tokens", static_cast<long long>(r.input_tokens + r.output_tokens));
  // Fields NullBoiler hides but users need (additive: old clients ignore them).
  o.set("input", r.input);
  o.set("config", r.config);
  set_if(&o, "parent_run_id", r.parent_run_id);
  set_if(&o, "forked_from_run_id", r.forked_from_run_id);
  set_if(&o, "forked_from_checkpoint_id", r.forked_from_checkpoint_id);
  Value list = Value::array();
  for (const StepRecord& s : steps) list.push_back(step_json(s));
  o.set("steps", std::move(list));
  return o;
}

Value step_json(const StepRecord& s) {
  Value o = Value::object({{"id", s.id},
                           {"run_id", s.run_id},
                           {"def_step_id", s.node_name},
                           {"type", s.type},
                           {"status", std::string(step_status_name(s.status))},
                           {"attempt", s.attempt},
                           {"max_attempts", s.max_attempts},
                           {"iteration_index", 0},
                           {"created_at_ms", static_cast<long long>(s.created_at_ms)},
                           {"updated_at_ms", static_cast<long long>(s.ended_at_ms ? s.ended_at_ms : s.started_at_ms)}});
  set_if(&o, "worker_id", s.worker_id);
  if (!s.output.is_null()) o.set("output_json", s.output);
  set_if(&o, "error_text", s.error);
  set_if(&o, "parent_step_id", s.parent_step_id);
  if (s.item_index >= 0) o.set("item_index", s.item_index);
  set_if(&o, "started_at_ms", s.started_at_ms);
  set_if(&o, "ended_at_ms", s.ended_at_ms);
  set_if(&o, "child_run_id", s.child_run_id);
  return o;
}

std::vector<std::vector<std::string>> cumulative_completed(const std::vector<Checkpoint>& cps) {
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> so_far;
  for (const Checkpoint& cp : cps) {
    for (const std::string& n : cp.completed_nodes) {
      if (std::find(so_far.begin(), so_far.end(), n) == so_far.end()) so_far.push_back(n);
    }
    out.push_back(so_far);
  }
  return out;
}

Value checkpoint_json(const Checkpoint& cp, const std::vector<std::string>& completed_nodes) {
  Value o = Value::object({{"id", cp.id}, {"run_id", cp.run_id}, {"step_id", cp.step_id}});
  set_if(&o, "parent_id", cp.parent_id);
  o.set("state", cp.state);
  Value completed = Value::array();
  for (const std::string& n : completed_nodes) completed.push_back(n);
  o.set("completed_nodes", std::move(completed));
  o.set("version", static_cast<long long>(cp.version));
  // The engine's scheduler state is internal; show NullBoiler's metadata
  // keys. As NullBoiler's, __init__ and __fork__ have none, and a checkpoint
  // without any omits the field (api §2.8).
  if (cp.step_id != "__init__" && cp.step_id != "__fork__") {
    Value meta = Value::object();
    if (cp.metadata["route_results"].is_object()) meta.set("route_results", cp.metadata["route_results"]);
    if (!cp.metadata["workflow_version"].is_null()) meta.set("workflow_version", cp.metadata["workflow_version"]);
    if (meta.size() > 0) o.set("metadata", std::move(meta));
  }
  o.set("created_at_ms", static_cast<long long>(cp.created_at_ms));
  return o;
}

Value event_json(const EventRecord& e) {
  Value o = Value::object({{"id", static_cast<long long>(e.seq)}, {"run_id", e.run_id}});
  if (const Value* step = e.data.find("step_id"); step && step->is_string()) o.set("step_id", *step);
  o.set("kind", e.kind);
  o.set("data", e.data);
  o.set("ts_ms", static_cast<long long>(e.created_at_ms));
  return o;
}

Value workflow_json(const WorkflowRecord& w) {
  return Value::object({{"id", w.id},
                        {"name", w.name},
                        {"version", static_cast<long long>(w.version)},
                        {"definition", w.definition},
                        {"created_at_ms", static_cast<long long>(w.created_at_ms)},
                        {"updated_at_ms", static_cast<long long>(w.updated_at_ms)}});
}

}  // namespace orch::server
