// SPDX-License-Identifier: MIT
//
// Typed Workflow -> definition JSON, the inverse of the parser: what a store
// keeps for a builder workflow and what Mermaid draws. Defaults are left out
// so the output reads like a hand-written definition.
#include "orch/workflow.h"

namespace orch {
namespace {

Value string_pairs(const std::vector<std::pair<std::string, std::string>>& pairs) {
  Value out = Value::object();
  for (const auto& [k, v] : pairs) out.set(k, v);
  return out;
}

Value string_array(const std::vector<std::string>& items) {
  Value out = Value::array();
  for (const auto& s : items) out.push_back(s);
  return out;
}

void write_task(const Node& node, Value* n) {
  const TaskConfig& t = node.task;
  if (t.prompt_template) n->set("prompt_template", *t.prompt_template);
  if (!t.worker_tags.empty()) n->set("worker_tags", string_array(t.worker_tags));
  if (t.output_key) n->set("output_key", *t.output_key);
  if (!t.output_mapping.empty()) n->set("output_mapping", string_pairs(t.output_mapping));
  const RetryPolicy defaults;
  const RetryPolicy& r = t.retry;
  if (r.max_attempts != defaults.max_attempts ||
      r.initial_interval_ms != defaults.initial_interval_ms ||
      r.backoff_factor != defaults.backoff_factor ||
      r.max_interval_ms != defaults.max_interval_ms || r.jitter != defaults.jitter) {
    n->set("retry", Value::object({{"max_attempts", r.max_attempts},
                                   {"initial_interval_ms", r.initial_interval_ms},
                                   {"backoff_factor", r.backoff_factor},
                                   {"max_interval_ms", r.max_interval_ms},
                                   {"jitter", r.jitter}}));
  }
  if (t.cache_ttl_ms) n->set("cache", Value::object({{"ttl_ms", *t.cache_ttl_ms}}));
  if (t.timeout_ms) n->set("timeout_ms", *t.timeout_ms);
  if (node.type != NodeType::kAgent) return;
  if (t.max_turns != 1) n->set("max_turns", t.max_turns);
  if (t.continuation_prompt) n->set("continuation_prompt", *t.continuation_prompt);
  if (t.turn_timeout_ms) n->set("turn_timeout_ms", *t.turn_timeout_ms);
}

Value write_node(const Node& node) {
  Value n = Value::object();
  n.set("type",
        node.unknown_type.empty() ? std::string(node_type_name(node.type)) : node.unknown_type);
  if (node.defer) n.set("defer", true);
  switch (node.type) {
    case NodeType::kTask:
    case NodeType::kAgent:
      write_task(node, &n);
      break;
    case NodeType::kRoute:
      n.set("input", node.route.input);
      if (!node.route.routes.empty()) n.set("routes", string_pairs(node.route.routes));
      if (node.route.default_route) n.set("default", *node.route.default_route);
      break;
    case NodeType::kInterrupt:
      if (!node.interrupt.message.empty()) n.set("message", node.interrupt.message);
      break;
    case NodeType::kSend:
      if (!node.send.items_key.empty()) n.set("items_key", node.send.items_key);
      if (!node.send.target_node.empty()) n.set("target_node", node.send.target_node);
      n.set("output_key", node.send.output_key);
      if (node.send.max_concurrency) n.set("max_concurrency", *node.send.max_concurrency);
      if (node.send.null_on_item_error) n.set("on_item_error", "null");
      break;
    case NodeType::kTransform:
      n.set("updates", node.transform.updates);
      if (!node.transform.store_updates.is_null())
        n.set("store_updates", node.transform.store_updates);
      break;
    case NodeType::kSubgraph:
      if (!node.subgraph.workflow_id.empty()) n.set("workflow_id", node.subgraph.workflow_id);
      if (!node.subgraph.input_mapping.empty()) {
        n.set("input_mapping", string_pairs(node.subgraph.input_mapping));
      }
      n.set("output_key", node.subgraph.output_key);
      break;
  }
  return n;
}

}  // namespace

Value workflow_to_definition(const Workflow& wf) {
  Value def = Value::object();
  if (!wf.id.empty()) def.set("id", wf.id);
  if (!wf.name.empty()) def.set("name", wf.name);
  def.set("version", wf.version);
  if (!wf.state_schema.empty()) {
    Value schema = Value::object();
    for (const StateKey& key : wf.state_schema) {
      Value k = Value::object();
      if (!key.type.empty()) k.set("type", key.type);
      k.set("reducer", key.unknown_reducer.empty() ? std::string(reducer_name(key.reducer))
                                                   : key.unknown_reducer);
      if (key.ephemeral) k.set("ephemeral", true);
      schema.set(key.name, std::move(k));
    }
    def.set("state_schema", std::move(schema));
  }
  Value nodes = Value::object();
  for (const Node& node : wf.nodes) nodes.set(node.name, write_node(node));
  def.set("nodes", std::move(nodes));
  Value edges = Value::array();
  for (const Edge& e : wf.edges) {
    edges.push_back(
        Value::array({e.condition ? e.source + ":" + *e.condition : e.source, e.target}));
  }
  def.set("edges", std::move(edges));
  if (!wf.interrupt_before.empty()) def.set("interrupt_before", string_array(wf.interrupt_before));
  if (!wf.interrupt_after.empty()) def.set("interrupt_after", string_array(wf.interrupt_after));
  if (wf.defaults.is_object() && !wf.defaults.as_object().empty()) def.set("defaults", wf.defaults);
  if (wf.recursion_limit) def.set("recursion_limit", *wf.recursion_limit);
  if (wf.durability) def.set("durability", *wf.durability);
  return def;
}

}  // namespace orch
