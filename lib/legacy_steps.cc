// SPDX-License-Identifier: MIT
//
// Legacy `POST /runs` bodies (a DAG of steps with depends_on) -> graph
// definitions. NullBoiler accepts these and then never runs them; converting
// them to a graph lets the one engine run both formats. Validation follows
// NullBoiler's order and messages (first failure wins), plus the checks a
// graph needs that NullBoiler never made because it never ran the steps.
#include <unordered_map>
#include <unordered_set>

#include "orch/workflow.h"

namespace orch {
namespace {

Status bad(std::string message) { return Status::invalid_argument(std::move(message)); }

bool is_positive_int(const Value& v) { return v.is_int() && v.as_int() >= 1; }

// NullBoiler loads strategies from files; the two shipped ones are named by
// how they build the steps, so both the file names and the build names work.
std::optional<bool> strategy_is_chain(const Value& strategy) {
  if (!strategy.is_string()) return std::nullopt;
  const std::string& s = strategy.as_string();
  if (s == "chain" || s == "sequential") return true;
  if (s == "independent" || s == "parallel") return false;
  return std::nullopt;
}

// Applies `strategy` (and `reduce`) to the steps, as NullBoiler's expansion.
Status expand_strategy(const Value& request, Array* steps) {
  auto chain = strategy_is_chain(request["strategy"]);
  if (!chain) return bad("unknown strategy");
  for (Value& step : *steps) {
    if (!step.is_object()) return bad("steps items must be objects");
    if (step.find("depends_on") != nullptr) return bad("cannot use depends_on with strategy");
    // NullBoiler turns these into sub_workflow steps that nothing can run.
    if (step.find("strategy") != nullptr && step.find("steps") != nullptr) {
      return bad("nested strategies are not supported");
    }
  }
  if (*chain) {
    for (size_t i = 1; i < steps->size(); ++i) {
      const Value& prev_id = (*steps)[i - 1]["id"];
      if (prev_id.is_string()) (*steps)[i].set("depends_on", Value::array({prev_id}));
    }
  }
  if (const Value* reduce = request.find("reduce"); reduce != nullptr && !reduce->is_null()) {
    if (!reduce->is_object()) return bad("reduce must be an object");
    Value step = *reduce;
    Value all = Value::array();
    for (const Value& s : *steps) {
      if (s["id"].is_string()) all.push_back(s["id"]);
    }
    step.set("type", "reduce");
    if (!step["id"].is_string()) step.set("id", "__reduce");
    step.set("depends_on", std::move(all));
    steps->push_back(std::move(step));
  }
  return Status::ok_status();
}

// `{{steps.ID.output}}` (legacy renderer) -> `{{state.ID}}`, also as an
// `{% if %}` condition, for ids of this request. Other tags are kept as they are.
std::string rewrite_prompt(const std::string& text, const std::unordered_set<std::string>& ids) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find('{', pos);
    if (open == std::string::npos || open + 1 >= text.size()) break;
    char kind = text[open + 1];
    std::string closer = kind == '{' ? "}}" : kind == '%' ? "%}" : "";
    size_t close = closer.empty() ? std::string::npos : text.find(closer, open + 2);
    if (close == std::string::npos) {
      out.append(text, pos, open + 1 - pos);
      pos = open + 1;
      continue;
    }
    std::string inner = text.substr(open + 2, close - open - 2);
    size_t b = inner.find_first_not_of(" \t\r\n");
    size_t e = inner.find_last_not_of(" \t\r\n");
    std::string expr = b == std::string::npos ? "" : inner.substr(b, e - b + 1);
    std::string prefix;
    if (kind == '%' && expr.compare(0, 3, "if ") == 0) {
      prefix = "if ";
      expr = expr.substr(3);
      expr.erase(0, expr.find_first_not_of(" \t\r\n"));
    } else if (kind == '%') {
      expr.clear();
    }
    constexpr std::string_view kHead = "steps.", kTail = ".output";
    out.append(text, pos, open - pos);
    if (expr.size() > kHead.size() + kTail.size() && expr.compare(0, kHead.size(), kHead) == 0 &&
        expr.compare(expr.size() - kTail.size(), kTail.size(), kTail) == 0 &&
        ids.count(expr.substr(kHead.size(), expr.size() - kHead.size() - kTail.size())) > 0) {
      std::string id = expr.substr(kHead.size(), expr.size() - kHead.size() - kTail.size());
      out += kind == '{' ? "{{state." + id + "}}" : "{% " + prefix + "state." + id + " %}";
    } else {
      out.append(text, open, close + 2 - open);
    }
    pos = close + 2;
  }
  if (pos < text.size()) out.append(text, pos, std::string::npos);
  return out;
}

// Kahn's algorithm: true when the depends_on graph has a cycle.
bool has_cycle(const Array& steps, const std::unordered_map<std::string, size_t>& index) {
  std::vector<size_t> pending(steps.size(), 0);
  std::vector<std::vector<size_t>> dependents(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const Value& deps = steps[i]["depends_on"];
    if (!deps.is_array()) continue;
    for (const Value& d : deps.as_array()) {
      dependents[index.at(d.as_string())].push_back(i);
      ++pending[i];
    }
  }
  std::vector<size_t> ready;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (pending[i] == 0) ready.push_back(i);
  }
  size_t done = 0;
  while (!ready.empty()) {
    size_t i = ready.back();
    ready.pop_back();
    ++done;
    for (size_t j : dependents[i]) {
      if (--pending[j] == 0) ready.push_back(j);
    }
  }
  return done != steps.size();
}

Status check_steps(const Array& steps, std::unordered_map<std::string, size_t>* index) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const Value& step = steps[i];
    if (!step.is_object()) return bad("each step must be an object");
    const Value& id = step["id"];
    if (!id.is_string()) return bad("each step must have string field 'id'");
    if (id.as_string().empty()) return bad("step id must not be empty");
    // The id becomes a node name, and these would not be one.
    if (id.as_string().find(':') != std::string::npos) return bad("step id must not contain ':'");
    if (id.as_string() == kStartNode || id.as_string() == kEndNode) {
      return bad("step id must not be __start__ or __end__");
    }
    if (!index->emplace(id.as_string(), i).second) return bad("duplicate step id");
  }
  for (const Value& step : steps) {
    if (const Value* deps = step.find("depends_on"); deps != nullptr && !deps->is_null()) {
      if (!deps->is_array()) return bad("depends_on must be an array");
      std::unordered_set<std::string> seen;
      for (const Value& d : deps->as_array()) {
        if (!d.is_string()) return bad("depends_on items must be strings");
        if (!seen.insert(d.as_string()).second) return bad("depends_on contains duplicate step id");
        if (index->count(d.as_string()) == 0) return bad("depends_on references unknown step id");
      }
    }
    if (const Value* retry = step.find("retry"); retry != nullptr && !retry->is_null()) {
      if (!retry->is_object()) return bad("retry must be an object");
      const Value* attempts = retry->find("max_attempts");
      if (attempts != nullptr && !is_positive_int(*attempts)) {
        return bad("retry.max_attempts must be a positive integer");
      }
    }
    if (const Value* timeout = step.find("timeout_ms"); timeout != nullptr && !timeout->is_null()) {
      if (!is_positive_int(*timeout)) return bad("timeout_ms must be a positive integer");
    }
  }
  if (has_cycle(steps, *index)) return bad("depends_on contains a cycle");
  return Status::ok_status();
}

Value step_node(const Value& step, const std::unordered_set<std::string>& ids) {
  bool agent = step["type"].is_string() && step["type"].as_string() == "agent";
  Value node = Value::object({{"type", agent ? "agent" : "task"}});
  for (const char* key : {"prompt_template", "worker_tags", "retry", "timeout_ms"}) {
    const Value* v = step.find(key);
    if (v == nullptr || v->is_null()) continue;
    if (v->is_string() && std::string_view(key) == "prompt_template") {
      node.set(key, rewrite_prompt(v->as_string(), ids));
    } else {
      node.set(key, *v);
    }
  }
  if (agent) {
    for (const char* key : {"max_turns", "continuation_prompt", "turn_timeout_ms"}) {
      if (const Value* v = step.find(key); v != nullptr && !v->is_null()) node.set(key, *v);
    }
  }
  node.set("output_key", step["id"]);
  return node;
}

}  // namespace

Result<Value> legacy_steps_to_workflow(const Value& request) {
  if (!request.is_object()) return bad("body must be a JSON object");
  const Value* steps_value = request.find("steps");
  if (steps_value == nullptr) return bad("missing required field: steps");
  if (!steps_value->is_array()) return bad("steps must be an array");
  Array steps = steps_value->as_array();
  if (const Value* strategy = request.find("strategy");
      strategy != nullptr && !strategy->is_null()) {
    ORCH_RETURN_IF_ERROR(expand_strategy(request, &steps));
  }
  if (steps.empty()) return bad("steps array must not be empty");
  std::unordered_map<std::string, size_t> index;
  ORCH_RETURN_IF_ERROR(check_steps(steps, &index));

  std::unordered_set<std::string> ids;
  for (const auto& entry : index) ids.insert(entry.first);
  std::vector<bool> has_dependents(steps.size(), false);
  Value nodes = Value::object();
  Value schema = Value::object();
  Value edges = Value::array();
  for (const Value& step : steps) {
    const std::string& id = step["id"].as_string();
    nodes.set(id, step_node(step, ids));
    schema.set(id, Value::object({{"reducer", "last_value"}}));
    const Value& deps = step["depends_on"];
    if (!deps.is_array() || deps.as_array().empty()) {
      edges.push_back(Value::array({std::string(kStartNode), id}));
      continue;
    }
    // One edge per dependency: the node is a join that waits for all of them.
    for (const Value& d : deps.as_array()) {
      edges.push_back(Value::array({d, id}));
      has_dependents[index.at(d.as_string())] = true;
    }
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!has_dependents[i]) edges.push_back(Value::array({steps[i]["id"], std::string(kEndNode)}));
  }
  return Value::object({{"state_schema", std::move(schema)},
                        {"nodes", std::move(nodes)},
                        {"edges", std::move(edges)}});
}

}  // namespace orch
