// SPDX-License-Identifier: MIT
#include "pull/task_workflows.h"

#include <algorithm>
#include <cctype>
#include <mutex>

namespace orch::server {
namespace {

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

void rewrite_workflow_task_refs(Value* definition) {
  const Value& current = *definition;  // const: reading must not insert keys
  if (!current["nodes"].is_object()) return;
  Value nodes = current["nodes"];
  Value rewritten = Value::object();
  for (const auto& [name, node] : nodes.as_object()) {
    Value n = node;
    if (n.is_object()) {
      for (const char* key : {"prompt_template", "continuation_prompt"}) {
        if (n[key].is_string()) n.set(key, rewrite_task_refs(n[key].as_string()));
      }
    }
    rewritten.set(name, n);
  }
  definition->set("nodes", rewritten);
}

Value single_node_workflow(const std::string& id, const std::string& node, Value node_def) {
  return Value::object({{"id", id},
                        {"name", id},
                        {"nodes", Value::object({{node, std::move(node_def)}})},
                        {"edges", Value::array({Value::array({"__start__", node}), Value::array({node, "__end__"})})},
                        {"state_schema", Value::object({{"output", Value::object({{"type", "string"}, {"reducer", "last_value"}})}})}});
}

}  // namespace

std::string rewrite_task_refs(const std::string& text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string::npos || open + 1 >= text.size()) break;
    char kind = text[open + 1];
    if (kind != '{' && kind != '%') {
      out.append(text, i, open + 1 - i);
      i = open + 1;
      continue;
    }
    size_t close = text.find(kind == '{' ? "}}" : "%}", open + 2);
    if (close == std::string::npos) break;
    out.append(text, i, open + 2 - i);
    const std::string inner = text.substr(open + 2, close - open - 2);
    for (size_t p = 0; p < inner.size(); ++p) {
      bool starts = inner.compare(p, 4, "task") == 0 && (p == 0 || (!is_ident(inner[p - 1]) && inner[p - 1] != '.')) &&
                    (p + 4 == inner.size() || !is_ident(inner[p + 4]));
      if (starts) {
        out += "config.task";
        p += 3;
      } else {
        out += inner[p];
      }
    }
    out.append(text, close, 2);
    i = close + 2;
  }
  if (i < text.size()) out.append(text, i, std::string::npos);
  return out;
}

Result<std::shared_ptr<const Workflow>> dispatch_workflow(const PipelineDef& def, Store& store) {
  Value definition;
  if (!def.workflow.is_null()) {
    definition = def.workflow;
  } else if (!def.workflow_id.empty()) {
    auto stored = store.get_workflow(def.workflow_id);
    if (!stored.ok()) {
      return Status::not_found("workflow '" + def.workflow_id + "' named by " + def.source + " is not stored");
    }
    definition = stored->definition;
  } else {
    // A NullBoiler dispatch file: one task node with its prompt and tags.
    Value tags = Value::array();
    for (const std::string& tag : def.worker_tags) tags.push_back(tag);
    definition = single_node_workflow(def.id, "dispatch",
                                      Value::object({{"type", "task"},
                                                     {"prompt_template", *def.prompt_template},
                                                     {"worker_tags", tags},
                                                     {"output_key", "output"}}));
  }
  if (!definition["id"].is_string()) definition.set("id", def.workflow_id.empty() ? def.id : def.workflow_id);
  rewrite_workflow_task_refs(&definition);
  return parse_workflow(definition);
}

Result<std::shared_ptr<const Workflow>> agent_workflow(const PipelineDef& def, const TrackerConfig& cfg) {
  const int64_t turns = def.max_turns.value_or(cfg.max_turns);
  const int64_t turn_timeout = def.turn_timeout_ms.value_or(cfg.turn_timeout_ms);
  int64_t budget = saturating_mul(cfg.health_check_retries, saturating_add(cfg.health_check_interval_ms, cfg.http_timeout_ms));
  budget = saturating_add(budget, saturating_mul(turns, saturating_add(turn_timeout, cfg.http_timeout_ms)));
  budget = std::min<int64_t>(saturating_add(budget, 60000), INT64_MAX / 4);
  return parse_workflow(single_node_workflow(def.id, "agent",
                                             Value::object({{"type", "task"},
                                                            {"prompt_template", "{{config.prompt}}"},
                                                            {"worker_tags", Value::array({kAgentTag})},
                                                            {"output_key", "output"},
                                                            {"timeout_ms", static_cast<long long>(budget)}})));
}

Result<std::string> render_for_task(TaskBoard& board, const TrackedTask& t, const Template& tpl, const Value* state) {
  Value config;
  Value task_json;
  TemplateContext tc;
  {
    std::lock_guard<std::mutex> lock(board.mu);
    config = run_config_locked(t);
    task_json = t.task;
    tc.attempt = t.attempt;
  }
  tc.state = state;
  tc.extra_roots = {{"task", &task_json}};
  tc.input = &task_json;
  tc.config = &config;
  return tpl.render(tc);
}

}  // namespace orch::server
