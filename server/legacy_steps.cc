// SPDX-License-Identifier: MIT
//
// Legacy `POST /runs` bodies (a DAG of steps with depends_on) -> graph
// definitions. NullBoiler accepts these and then never runs them; converting
// them to a graph lets the one engine run both formats. Validation follows
// NullBoiler's order and messages (first failure wins), plus the checks a
// graph needs that NullBoiler never made because it never ran the steps.
#include <unordered_map>
#include <unordered_set>

#include "legacy_steps.h"

#include "orch/workflow.h"

namespace orch::server {
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

// Finds `needle` in `text` at or after positions that never decrease. A search
// is repeated only once the position has passed the match it found, and a
// search that found nothing is never repeated: scanning a text with many
// unclosed "{{" then costs O(length) instead of one scan to the end per "{{".
class ForwardFinder {
 public:
  ForwardFinder(std::string_view text, std::string_view needle) : text_(text), needle_(needle) {}

  size_t next(size_t pos) {
    if (!searched_ || (found_ != std::string_view::npos && pos > found_)) {
      found_ = text_.find(needle_, pos);
      searched_ = true;
    }
    return found_;
  }

 private:
  std::string_view text_;
  std::string_view needle_;
  bool searched_ = false;
  size_t found_ = std::string_view::npos;
};

std::string_view trim_left(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  return b == std::string_view::npos ? std::string_view() : s.substr(b);
}

std::string_view trim(std::string_view s) {
  s = trim_left(s);
  return s.substr(0, s.find_last_not_of(" \t\r\n") + 1);
}

// ID when `expr` is `steps.ID.output` for an id of this request, else "".
std::string_view legacy_output_id(std::string_view expr,
                                  const std::unordered_set<std::string>& ids) {
  constexpr std::string_view kHead = "steps.", kTail = ".output";
  if (expr.size() <= kHead.size() + kTail.size() || expr.substr(0, kHead.size()) != kHead ||
      expr.substr(expr.size() - kTail.size()) != kTail) {
    return {};
  }
  std::string_view id = expr.substr(kHead.size(), expr.size() - kHead.size() - kTail.size());
  return ids.count(std::string(id)) > 0 ? id : std::string_view();
}

// `{{steps.ID.output}}` (legacy renderer) -> `{{state.ID}}`, also as an
// `{% if %}` condition, for ids of this request. Other tags are kept as they
// are. One pass over the text: each byte is looked at a bounded number of
// times, and only rewritten tags break the copy into pieces.
std::string rewrite_prompt(std::string_view text, const std::unordered_set<std::string>& ids) {
  std::string out;
  ForwardFinder expr_close(text, "}}"), tag_close(text, "%}");
  size_t copied = 0;  // text before this offset is in `out`
  size_t scan = 0;    // where to look for the next '{'
  while (true) {
    size_t open = text.find('{', scan);
    if (open == std::string_view::npos || open + 1 >= text.size()) break;
    char kind = text[open + 1];
    size_t close = kind == '{'   ? expr_close.next(open + 2)
                   : kind == '%' ? tag_close.next(open + 2)
                                 : std::string_view::npos;
    if (close == std::string_view::npos) {
      scan = open + 1;
      continue;
    }
    scan = close + 2;
    std::string_view expr = trim(text.substr(open + 2, close - open - 2));
    if (kind == '%') {
      if (expr.substr(0, 3) != "if ") continue;  // only `if` tags read a value
      expr = trim_left(expr.substr(3));
    }
    std::string_view id = legacy_output_id(expr, ids);
    if (id.empty()) continue;
    out.append(text.substr(copied, open - copied));
    out.append(kind == '{' ? "{{state." : "{% if state.");
    out.append(id);
    out.append(kind == '{' ? "}}" : " %}");
    copied = close + 2;
  }
  out.append(text.substr(copied));
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

}  // namespace orch::server
