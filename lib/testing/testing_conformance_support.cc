// SPDX-License-Identifier: MIT
// Failure collection, sample records and comparisons for the Store
// conformance suite.
#include "testing/testing_conformance_support.h"

#include <cstdint>
#include <limits>

namespace orch::testing::conformance {
namespace {

// One misbehaving method can fail hundreds of expectations in a loop; the
// first few say what is wrong.
constexpr int kMaxFailuresPerCheck = 25;

std::string shorten(std::string text) {
  constexpr size_t kMax = 240;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

template <typename T>
std::string show(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return "\"" + shorten(v) + "\"";
  } else {
    return std::to_string(v);
  }
}

}  // namespace

void Checker::fail(const std::string& what) {
  std::lock_guard<std::mutex> lock(*mu_);
  ++reported_;
  if (reported_ < kMaxFailuresPerCheck) {
    failures_->push_back(check_ + ": " + what);
  } else if (reported_ == kMaxFailuresPerCheck) {
    failures_->push_back(check_ + ": (further failures of this check omitted)");
  }
}

bool Checker::expect(bool condition, const std::string& what) {
  if (!condition) fail(what);
  return condition;
}

bool Checker::expect_ok(const Status& status, const std::string& call) {
  if (!status.ok()) fail(call + " failed: " + status.to_string());
  return status.ok();
}

bool Checker::expect_code(const Status& status, StatusCode code, const std::string& call) {
  if (status.code() == code) return true;
  fail(call + ": expected " + std::string(status_code_name(code)) + ", got " + status.to_string());
  return false;
}

bool Checker::same_value(const Value& expected, const Value& actual, const std::string& context) {
  if (same_json(expected, actual)) return true;
  fail(context + ": expected " + shorten(expected.to_json()) + ", got " +
       shorten(actual.to_json()));
  return false;
}

#define ORCH_CONFORMANCE_FIELD(name)                                                              \
  if (!(expected.name == actual.name)) {                                                          \
    fail(context + "." #name ": expected " + show(expected.name) + ", got " + show(actual.name)); \
    ok = false;                                                                                   \
  }
#define ORCH_CONFORMANCE_VALUE(name) \
  ok = same_value(expected.name, actual.name, context + "." #name) && ok;

bool Checker::same_run(const RunRecord& expected, const RunRecord& actual,
                       const std::string& context) {
  bool ok = true;
  ORCH_CONFORMANCE_FIELD(id)
  if (expected.status != actual.status) {
    fail(context + ".status: expected " + std::string(run_status_name(expected.status)) + ", got " +
         std::string(run_status_name(actual.status)));
    ok = false;
  }
  ORCH_CONFORMANCE_FIELD(workflow_id)
  ORCH_CONFORMANCE_VALUE(workflow)
  ORCH_CONFORMANCE_VALUE(input)
  ORCH_CONFORMANCE_VALUE(config)
  ORCH_CONFORMANCE_VALUE(state)
  ORCH_CONFORMANCE_VALUE(host_data)
  ORCH_CONFORMANCE_FIELD(error)
  ORCH_CONFORMANCE_FIELD(parent_run_id)
  ORCH_CONFORMANCE_FIELD(parent_node)
  ORCH_CONFORMANCE_FIELD(idempotency_key)
  ORCH_CONFORMANCE_FIELD(forked_from_run_id)
  ORCH_CONFORMANCE_FIELD(forked_from_checkpoint_id)
  ORCH_CONFORMANCE_FIELD(created_at_ms)
  ORCH_CONFORMANCE_FIELD(updated_at_ms)
  ORCH_CONFORMANCE_FIELD(started_at_ms)
  ORCH_CONFORMANCE_FIELD(ended_at_ms)
  ORCH_CONFORMANCE_FIELD(input_tokens)
  ORCH_CONFORMANCE_FIELD(output_tokens)
  ORCH_CONFORMANCE_FIELD(checkpoint_count)
  ORCH_CONFORMANCE_FIELD(recoveries)
  return ok;
}

bool Checker::same_checkpoint(const Checkpoint& expected, const Checkpoint& actual,
                              const std::string& context) {
  bool ok = true;
  ORCH_CONFORMANCE_FIELD(id)
  ORCH_CONFORMANCE_FIELD(run_id)
  ORCH_CONFORMANCE_FIELD(parent_id)
  ORCH_CONFORMANCE_FIELD(step_id)
  ORCH_CONFORMANCE_FIELD(version)
  ORCH_CONFORMANCE_VALUE(state)
  if (expected.completed_nodes != actual.completed_nodes) {
    fail(context + ".completed_nodes: expected " + std::to_string(expected.completed_nodes.size()) +
         " names, got " + std::to_string(actual.completed_nodes.size()) + " (or different names)");
    ok = false;
  }
  ORCH_CONFORMANCE_VALUE(metadata)
  ORCH_CONFORMANCE_FIELD(created_at_ms)
  return ok;
}

bool Checker::same_step(const StepRecord& expected, const StepRecord& actual,
                        const std::string& context) {
  bool ok = true;
  ORCH_CONFORMANCE_FIELD(id)
  ORCH_CONFORMANCE_FIELD(run_id)
  ORCH_CONFORMANCE_FIELD(node_name)
  ORCH_CONFORMANCE_FIELD(type)
  if (expected.status != actual.status) {
    fail(context + ".status: expected " + std::string(step_status_name(expected.status)) +
         ", got " + std::string(step_status_name(actual.status)));
    ok = false;
  }
  ORCH_CONFORMANCE_FIELD(attempt)
  ORCH_CONFORMANCE_FIELD(max_attempts)
  ORCH_CONFORMANCE_FIELD(superstep)
  ORCH_CONFORMANCE_FIELD(item_index)
  ORCH_CONFORMANCE_FIELD(parent_step_id)
  ORCH_CONFORMANCE_FIELD(worker_id)
  ORCH_CONFORMANCE_FIELD(child_run_id)
  ORCH_CONFORMANCE_VALUE(input)
  ORCH_CONFORMANCE_VALUE(output)
  ORCH_CONFORMANCE_FIELD(error)
  ORCH_CONFORMANCE_FIELD(input_tokens)
  ORCH_CONFORMANCE_FIELD(output_tokens)
  ORCH_CONFORMANCE_FIELD(created_at_ms)
  ORCH_CONFORMANCE_FIELD(started_at_ms)
  ORCH_CONFORMANCE_FIELD(ended_at_ms)
  return ok;
}

#undef ORCH_CONFORMANCE_FIELD
#undef ORCH_CONFORMANCE_VALUE

bool same_json(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::kNull:
      return true;
    case Value::Type::kBool:
      return a.as_bool() == b.as_bool();
    case Value::Type::kInt:
      return a.as_int() == b.as_int();
    // Through JSON text a double comes back as the same shortest form.
    case Value::Type::kDouble:
      return a.as_double() == b.as_double();
    case Value::Type::kString:
      return a.as_string() == b.as_string();
    case Value::Type::kArray: {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!same_json(a.as_array()[i], b.as_array()[i])) return false;
      }
      return true;
    }
    case Value::Type::kObject: {
      if (a.size() != b.size()) return false;
      for (const auto& member : a.as_object()) {
        const Value* other = b.find(member.first);
        if (other == nullptr || !same_json(member.second, *other)) return false;
      }
      return true;
    }
  }
  return false;
}

RunRecord sample_run(const std::string& id) {
  RunRecord run;
  run.id = id;
  run.status = RunStatus::kPending;
  run.workflow_id = "wf-sample";
  run.workflow =
      Value::object({{"nodes", Value::object({{"a", Value::object({{"type", "task"}})}})},
                     {"edges", Value::array({Value::array({"__start__", "a"})})}});
  run.input = Value::object({{"topic", "h\u00e9llo \u2713 \"quoted\" \\ back"},
                             {"big", std::numeric_limits<int64_t>::max()},
                             {"small", std::numeric_limits<int64_t>::min()},
                             {"half", 0.5},
                             {"whole_double", 1.0},
                             {"nothing", nullptr},
                             {"flag", true},
                             {"empty_list", Value::array()},
                             {"empty_map", Value::object()}});
  run.config = Value::object({{"recursion_limit", 25}});
  run.state = Value::object({{"messages", Value::array({"hi"})}});
  run.host_data = Value::object({{"callbacks", Value::array({Value::object({{"url", "http://127.0.0.1:1/cb"}})})}});
  run.error = "";
  run.parent_run_id = "";
  run.parent_node = "";
  run.idempotency_key = "";
  run.forked_from_run_id = "src-run";
  run.forked_from_checkpoint_id = "src-cp";
  run.created_at_ms = 1700000000000;
  run.updated_at_ms = 1700000000001;
  run.started_at_ms = 1700000000002;
  run.ended_at_ms = 0;
  run.input_tokens = 12;
  run.output_tokens = 34;
  run.checkpoint_count = 0;
  return run;
}

StepRecord sample_step(const std::string& run_id, const std::string& id, const std::string& node) {
  StepRecord step;
  step.id = id;
  step.run_id = run_id;
  step.node_name = node;
  step.type = "task";
  step.status = StepStatus::kRunning;
  step.attempt = 2;
  step.max_attempts = 3;
  step.superstep = 7;
  step.item_index = 1;
  step.parent_step_id = "send-step";
  step.worker_id = "worker-1";
  step.child_run_id = "";
  step.input = Value::object({{"prompt", "do " + node}});
  step.output = Value();
  step.error = "";
  step.input_tokens = 5;
  step.output_tokens = 6;
  step.created_at_ms = 1700000000100;
  step.started_at_ms = 1700000000101;
  step.ended_at_ms = 0;
  return step;
}

Checkpoint sample_checkpoint(const std::string& run_id, int64_t version, Value state) {
  Checkpoint cp;
  cp.id = run_id + "-cp" + std::to_string(version);
  cp.run_id = run_id;
  cp.parent_id = version == 0 ? "" : run_id + "-cp" + std::to_string(version - 1);
  cp.step_id = version == 0 ? "__init__" : "node" + std::to_string(version);
  cp.version = version;
  cp.state = std::move(state);
  for (int64_t i = 1; i <= version; ++i) cp.completed_nodes.push_back("node" + std::to_string(i));
  cp.metadata = Value::object({{"workflow_version", 1}, {"step", version}});
  cp.created_at_ms = 1700000001000 + version;
  return cp;
}

bool create(Store& store, Checker& c, const RunRecord& run) {
  return c.expect_ok(store.create_run(run), "create_run(" + run.id + ")");
}

}  // namespace orch::testing::conformance
