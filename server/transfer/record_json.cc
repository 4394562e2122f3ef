// SPDX-License-Identifier: MIT
#include "transfer/record_json.h"

#include <variant>

namespace orch::server {
namespace {

// One member of a record: its JSON name, where it lives, whether a record
// without it is refused. Tables of these keep each record's two directions
// from drifting apart.
template <typename R>
struct Field {
  const char* name;
  std::variant<std::string R::*, int64_t R::*, int R::*, Value R::*> member;
  bool required = false;
};

template <typename R, size_t N>
Value fields_to_json(const R& record, const Field<R> (&fields)[N]) {
  Value out = Value::object();
  for (const Field<R>& f : fields) {
    std::visit([&](auto member) { out.set(f.name, Value(record.*member)); }, f.member);
  }
  return out;
}

template <typename R, size_t N>
Status fields_from_json(const Value& v, const Field<R> (&fields)[N], const char* what, R* record) {
  if (!v.is_object()) return Status::invalid_argument(std::string(what) + " must be a JSON object");
  for (const Field<R>& f : fields) {
    const Value* field = v.find(f.name);
    if (field == nullptr || field->is_null()) {
      if (f.required) return Status::invalid_argument(std::string(what) + " has no " + f.name);
      continue;
    }
    auto wrong = [&](const char* type) {
      return Status::invalid_argument(std::string(what) + "." + f.name + " must be " + type);
    };
    if (auto s = std::get_if<std::string R::*>(&f.member)) {
      if (!field->is_string()) return wrong("a string");
      record->**s = field->as_string();
    } else if (auto i = std::get_if<int64_t R::*>(&f.member)) {
      if (!field->is_int()) return wrong("an integer");
      record->**i = field->as_int();
    } else if (auto n = std::get_if<int R::*>(&f.member)) {
      if (!field->is_int() || field->as_int() < INT32_MIN || field->as_int() > INT32_MAX) return wrong("a 32-bit integer");
      record->**n = static_cast<int>(field->as_int());
    } else {
      record->*std::get<Value R::*>(f.member) = *field;
    }
  }
  if (const Field<R>& key = fields[0]; key.required) {
    // The key (every table's first field) must not be empty either.
    if (auto s = std::get_if<std::string R::*>(&key.member); s && (record->**s).empty()) {
      return Status::invalid_argument(std::string(what) + "." + key.name + " must not be empty");
    }
  }
  return Status();
}

const Field<RunRecord> kRun[] = {
    {"id", &RunRecord::id, true},
    {"workflow_id", &RunRecord::workflow_id},
    {"workflow", &RunRecord::workflow},
    {"input", &RunRecord::input},
    {"config", &RunRecord::config},
    {"state", &RunRecord::state},
    {"host_data", &RunRecord::host_data},
    {"error", &RunRecord::error},
    {"parent_run_id", &RunRecord::parent_run_id},
    {"parent_node", &RunRecord::parent_node},
    {"idempotency_key", &RunRecord::idempotency_key},
    {"forked_from_run_id", &RunRecord::forked_from_run_id},
    {"forked_from_checkpoint_id", &RunRecord::forked_from_checkpoint_id},
    {"created_at_ms", &RunRecord::created_at_ms},
    {"updated_at_ms", &RunRecord::updated_at_ms},
    {"started_at_ms", &RunRecord::started_at_ms},
    {"ended_at_ms", &RunRecord::ended_at_ms},
    {"input_tokens", &RunRecord::input_tokens},
    {"output_tokens", &RunRecord::output_tokens},
    {"checkpoint_count", &RunRecord::checkpoint_count},
    {"recoveries", &RunRecord::recoveries},
};

const Field<Checkpoint> kCheckpoint[] = {
    {"id", &Checkpoint::id, true},
    {"run_id", &Checkpoint::run_id, true},
    {"parent_id", &Checkpoint::parent_id},
    {"step_id", &Checkpoint::step_id},
    {"version", &Checkpoint::version, true},
    {"state", &Checkpoint::state},
    {"metadata", &Checkpoint::metadata},
    {"created_at_ms", &Checkpoint::created_at_ms},
};

const Field<StepRecord> kStep[] = {
    {"id", &StepRecord::id, true},
    {"run_id", &StepRecord::run_id, true},
    {"node_name", &StepRecord::node_name},
    {"type", &StepRecord::type},
    {"attempt", &StepRecord::attempt},
    {"max_attempts", &StepRecord::max_attempts},
    {"superstep", &StepRecord::superstep},
    {"item_index", &StepRecord::item_index},
    {"parent_step_id", &StepRecord::parent_step_id},
    {"worker_id", &StepRecord::worker_id},
    {"child_run_id", &StepRecord::child_run_id},
    {"input", &StepRecord::input},
    {"output", &StepRecord::output},
    {"error", &StepRecord::error},
    {"input_tokens", &StepRecord::input_tokens},
    {"output_tokens", &StepRecord::output_tokens},
    {"created_at_ms", &StepRecord::created_at_ms},
    {"started_at_ms", &StepRecord::started_at_ms},
    {"ended_at_ms", &StepRecord::ended_at_ms},
};

const Field<EventRecord> kEvent[] = {
    {"run_id", &EventRecord::run_id, true},
    {"seq", &EventRecord::seq, true},
    {"kind", &EventRecord::kind, true},
    {"data", &EventRecord::data},
    {"created_at_ms", &EventRecord::created_at_ms},
};

const Field<PendingWrite> kPendingWrite[] = {
    {"run_id", &PendingWrite::run_id, true},
    {"superstep", &PendingWrite::superstep, true},
    {"node_name", &PendingWrite::node_name, true},
    {"result", &PendingWrite::result},
};

const Field<WorkflowRecord> kWorkflow[] = {
    {"id", &WorkflowRecord::id, true},
    {"name", &WorkflowRecord::name},
    {"version", &WorkflowRecord::version},
    {"definition", &WorkflowRecord::definition, true},
    {"created_at_ms", &WorkflowRecord::created_at_ms},
    {"updated_at_ms", &WorkflowRecord::updated_at_ms},
};

std::optional<StepStatus> step_status_named(std::string_view name) {
  for (StepStatus s : {StepStatus::kPending, StepStatus::kReady, StepStatus::kRunning, StepStatus::kCompleted,
                       StepStatus::kFailed, StepStatus::kSkipped, StepStatus::kInterrupted}) {
    if (step_status_name(s) == name) return s;
  }
  return std::nullopt;
}

}  // namespace

Value to_json(const RunRecord& run) {
  Value out = fields_to_json(run, kRun);
  out.set("status", std::string(run_status_name(run.status)));
  return out;
}

Value to_json(const Checkpoint& checkpoint) {
  Value out = fields_to_json(checkpoint, kCheckpoint);
  Value nodes = Value::array();
  for (const std::string& n : checkpoint.completed_nodes) nodes.push_back(n);
  out.set("completed_nodes", std::move(nodes));
  return out;
}

Value to_json(const StepRecord& step) {
  Value out = fields_to_json(step, kStep);
  out.set("status", std::string(step_status_name(step.status)));
  return out;
}

Value to_json(const EventRecord& event) { return fields_to_json(event, kEvent); }
Value to_json(const PendingWrite& write) { return fields_to_json(write, kPendingWrite); }
Value to_json(const WorkflowRecord& workflow) { return fields_to_json(workflow, kWorkflow); }

Result<RunRecord> run_from_json(const Value& v) {
  RunRecord r;
  ORCH_RETURN_IF_ERROR(fields_from_json(v, kRun, "run", &r));
  std::optional<RunStatus> status = run_status_from_name(v["status"].get_string(""));
  if (!status) return Status::invalid_argument("run.status must be a run status, not " + v["status"].to_json());
  r.status = *status;
  return r;
}

Result<Checkpoint> checkpoint_from_json(const Value& v) {
  Checkpoint c;
  ORCH_RETURN_IF_ERROR(fields_from_json(v, kCheckpoint, "checkpoint", &c));
  const Value& nodes = v["completed_nodes"];
  if (!nodes.is_null()) {
    if (!nodes.is_array()) return Status::invalid_argument("checkpoint.completed_nodes must be an array of strings");
    for (const Value& n : nodes.as_array()) {
      if (!n.is_string()) return Status::invalid_argument("checkpoint.completed_nodes must be an array of strings");
      c.completed_nodes.push_back(n.as_string());
    }
  }
  return c;
}

Result<StepRecord> step_from_json(const Value& v) {
  StepRecord s;
  ORCH_RETURN_IF_ERROR(fields_from_json(v, kStep, "step", &s));
  std::optional<StepStatus> status = step_status_named(v["status"].get_string(""));
  if (!status) return Status::invalid_argument("step.status must be a step status, not " + v["status"].to_json());
  s.status = *status;
  return s;
}

Result<EventRecord> event_from_json(const Value& v) {
  EventRecord e;
  ORCH_RETURN_IF_ERROR(fields_from_json(v, kEvent, "event", &e));
  if (e.kind.empty()) return Status::invalid_argument("event.kind must not be empty");
  return e;
}

Result<PendingWrite> pending_write_from_json(const Value& v) {
  PendingWrite w;
  ORCH_RETURN_IF_ERROR(fields_from_json(v, kPendingWrite, "pending_write", &w));
  return w;
}

Result<WorkflowRecord> workflow_from_json(const Value& v) {
  WorkflowRecord w;
  ORCH_RETURN_IF_ERROR(fields_from_json(v, kWorkflow, "workflow", &w));
  return w;
}

}  // namespace orch::server
