// SPDX-License-Identifier: MIT
//
// Definition JSON -> typed Workflow, with NullBoiler's coercions. A field of
// the wrong type or value is an invalid_field error (SPEC §8: every bad input
// gets a 4xx), not a silent fallback to the default as in NullBoiler; a value
// only out of range is clamped with a warning, and a non-string item of a
// list of names is skipped with one. validate_workflow() reports them all;
// parse_workflow() ignores them.
#include <algorithm>
#include <cstdint>

#include "orch/workflow.h"
#include "workflow/workflow_internal.h"

namespace orch {
namespace workflow_internal {
namespace {

// A member that is present and not null (null means "not given" throughout).
const Value* present(const Value& object, std::string_view key) {
  const Value* v = object.find(key);
  return v == nullptr || v->is_null() ? nullptr : v;
}

std::string join_key(std::string_view prefix, std::string_view key) {
  std::string out(prefix);
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

class DefinitionReader {
 public:
  explicit DefinitionReader(std::vector<ValidationIssue>* issues) : issues_(issues) {}

  void read(const Value& def, Workflow* wf) {
    wf->definition = def;
    read_top_level(def, wf);
    read_schema(def, wf);
    for (const auto& [name, spec] : def["nodes"].as_object())
      wf->nodes.push_back(read_node(name, spec));
    read_edges(def["edges"].as_array(), wf);
  }

 private:
  void note(bool warning, std::string_view node, std::string key, std::string message) {
    if (issues_ == nullptr) return;
    issues_->push_back(
        {"invalid_field", std::string(node), std::move(key), std::move(message), warning});
  }
  void warn(std::string_view node, std::string key, std::string message) {
    note(true, node, std::move(key), std::move(message));
  }
  void fail(std::string_view node, std::string key, std::string message) {
    note(false, node, std::move(key), std::move(message));
  }

  // Typed reads: absent or null give nullopt silently, a value of another type
  // gives nullopt and an error. `label` names the field in the issue.
  std::optional<int64_t> integer(const Value& object, std::string_view key, std::string_view node,
                                 const std::string& label) {
    const Value* v = present(object, key);
    if (v == nullptr) return std::nullopt;
    // NullBoiler reads these with an integer accessor: 1000.0 is not an integer.
    if (v->is_int()) return v->as_int();
    fail(node, label, label + " must be an integer");
    return std::nullopt;
  }

  std::optional<double> number(const Value& object, std::string_view key, std::string_view node,
                               const std::string& label) {
    const Value* v = present(object, key);
    if (v == nullptr) return std::nullopt;
    if (v->is_number()) return v->as_double();
    fail(node, label, label + " must be a number");
    return std::nullopt;
  }

  std::optional<std::string> string(const Value& object, std::string_view key,
                                    std::string_view node, const std::string& label) {
    const Value* v = present(object, key);
    if (v == nullptr) return std::nullopt;
    if (v->is_string()) return v->as_string();
    fail(node, label, label + " must be a string");
    return std::nullopt;
  }

  // An integer that must be >= 1 (timeouts, limits).
  std::optional<int64_t> positive(const Value& object, std::string_view key, std::string_view node,
                                  const std::string& label) {
    auto v = integer(object, key, node, label);
    if (v && *v < 1) {
      fail(node, label, label + " must be a positive integer");
      return std::nullopt;
    }
    return v;
  }

  // An integer clamped into [lo, hi], with a warning when it had to be.
  std::optional<int64_t> clamped(const Value& object, std::string_view key, std::string_view node,
                                 const std::string& label, int64_t lo, int64_t hi) {
    auto v = integer(object, key, node, label);
    if (v && (*v < lo || *v > hi)) {
      int64_t c = std::clamp(*v, lo, hi);
      std::string range = hi == INT64_MAX
                              ? "below " + std::to_string(lo)
                              : "outside " + std::to_string(lo) + ".." + std::to_string(hi);
      warn(node, label,
           label + " " + std::to_string(*v) + " is " + range + "; using " + std::to_string(c));
      return c;
    }
    return v;
  }

  // An array of strings; non-string items are skipped (as NullBoiler does).
  std::vector<std::string> string_list(const Value& object, std::string_view key,
                                       std::string_view node, const std::string& label) {
    std::vector<std::string> out;
    const Value* v = present(object, key);
    if (v == nullptr) return out;
    if (!v->is_array()) {
      fail(node, label, label + " must be an array of strings");
      return out;
    }
    for (const Value& item : v->as_array()) {
      if (item.is_string()) {
        out.push_back(item.as_string());
      } else {
        warn(node, label,
             label + " has a non-string item (" + std::string(type_name(item.type())) +
                 "); only strings count");
      }
    }
    return out;
  }

  // An object of strings (key -> path); other values are skipped.
  std::vector<std::pair<std::string, std::string>> string_map(const Value& object,
                                                              std::string_view key,
                                                              std::string_view node,
                                                              const std::string& label) {
    std::vector<std::pair<std::string, std::string>> out;
    const Value* v = present(object, key);
    if (v == nullptr) return out;
    if (!v->is_object()) {
      fail(node, label, label + " must be an object");
      return out;
    }
    for (const auto& [k, path] : v->as_object()) {
      if (path.is_string()) {
        out.emplace_back(k, path.as_string());
      } else {
        fail(node, join_key(label, k), join_key(label, k) + " must be a string path");
      }
    }
    return out;
  }

  void read_top_level(const Value& def, Workflow* wf) {
    if (auto id = field_text(def, "id")) wf->id = *id;
    if (auto name = field_text(def, "name")) wf->name = *name;
    if (auto version = integer(def, "version", "", "version")) wf->version = *version;
    if (const Value* d = present(def, "defaults")) {
      if (d->is_object()) {
        wf->defaults = *d;
      } else {
        fail("", "defaults", "defaults must be an object");
      }
    }
    wf->recursion_limit = positive(def, "recursion_limit", "", "recursion_limit");
    if (auto d = string(def, "durability", "", "durability")) {
      if (durability_from_name(*d)) {
        wf->durability = *d;
      } else {
        fail("", "durability", "durability must be \"sync\", \"full\" or \"exit\"");
      }
    }
    wf->interrupt_before = string_list(def, "interrupt_before", "", "interrupt_before");
    wf->interrupt_after = string_list(def, "interrupt_after", "", "interrupt_after");
  }

  void read_schema(const Value& def, Workflow* wf) {
    // `schema` is NullBoiler's legacy alias, used only when state_schema is absent.
    const Value* schema = nullptr;
    for (const char* key : {"state_schema", "schema"}) {
      const Value* v = present(def, key);
      if (v == nullptr) continue;
      if (v->is_object()) {
        schema = v;
        break;
      }
      fail("", key, std::string(key) + " must be an object");
    }
    if (schema == nullptr) return;
    for (const auto& [name, spec] : schema->as_object()) {
      StateKey key;
      key.name = name;
      std::string label = "state_schema." + name;
      if (!spec.is_object()) {
        fail("", label, label + " must be an object {type, reducer, ephemeral}");
        wf->state_schema.push_back(std::move(key));
        continue;
      }
      if (auto type = string(spec, "type", "", label + ".type")) key.type = *type;
      if (auto reducer = field_text(spec, "reducer")) {
        if (auto kind = reducer_from_name(*reducer)) {
          key.reducer = *kind;
        } else {
          // An empty name is still not a reducer; keep it visible as JSON text.
          key.unknown_reducer = reducer->empty() ? std::string("\"\"") : *reducer;
        }
      }
      if (const Value* e = present(spec, "ephemeral")) {
        if (e->is_bool()) {
          key.ephemeral = e->as_bool();
        } else {
          fail("", label + ".ephemeral", label + ".ephemeral must be a boolean");
        }
      }
      wf->state_schema.push_back(std::move(key));
    }
  }

  Node read_node(const std::string& name, const Value& spec) {
    Node node;
    node.name = name;
    if (!spec.is_object()) {
      fail(name, "", "node must be a JSON object");
      return node;
    }
    if (auto type = field_text(spec, "type")) {
      if (auto t = node_type_from_name(*type)) {
        node.type = *t;
      } else {
        node.unknown_type = type->empty() ? std::string("\"\"") : *type;
      }
    }
    if (const Value* d = present(spec, "defer")) {
      if (d->is_bool()) {
        node.defer = d->as_bool();
      } else {
        fail(name, "defer", "defer must be a boolean (only true defers a node)");
      }
    }
    switch (node.type) {
      case NodeType::kTask:
      case NodeType::kAgent:
        read_task(name, spec, node.type == NodeType::kAgent, &node.task);
        break;
      case NodeType::kRoute:
        read_route(name, spec, &node.route);
        break;
      case NodeType::kInterrupt:
        node.interrupt.message = field_text(spec, "message").value_or("");
        break;
      case NodeType::kSend:
        read_send(name, spec, &node.send);
        break;
      case NodeType::kTransform:
        read_transform(name, spec, &node.transform);
        break;
      case NodeType::kSubgraph:
        read_subgraph(name, spec, &node.subgraph);
        break;
    }
    return node;
  }

  void read_task(const std::string& node, const Value& spec, bool agent, TaskConfig* task) {
    task->prompt_template = field_text(spec, "prompt_template");
    task->worker_tags = string_list(spec, "worker_tags", node, "worker_tags");
    task->output_key = field_text(spec, "output_key");
    task->output_mapping = string_map(spec, "output_mapping", node, "output_mapping");
    if (const Value* retry = present(spec, "retry")) {
      if (retry->is_object()) {
        task->retry = read_retry(node, *retry);
      } else {
        fail(node, "retry", "retry must be an object");
      }
    }
    if (const Value* cache = present(spec, "cache")) {
      if (cache->is_object()) {
        task->cache_ttl_ms = clamped(*cache, "ttl_ms", node, "cache.ttl_ms", 0, INT64_MAX);
      } else {
        fail(node, "cache", "cache must be an object {ttl_ms}");
      }
    }
    task->timeout_ms = positive(spec, "timeout_ms", node, "timeout_ms");
    if (agent) {
      if (auto turns = clamped(spec, "max_turns", node, "max_turns", 1, 100)) {
        task->max_turns = static_cast<int>(*turns);
      }
      task->continuation_prompt = field_text(spec, "continuation_prompt");
      task->turn_timeout_ms = positive(spec, "turn_timeout_ms", node, "turn_timeout_ms");
    }
  }

  RetryPolicy read_retry(const std::string& node, const Value& spec) {
    RetryPolicy p;
    if (auto v = clamped(spec, "max_attempts", node, "retry.max_attempts", 1, 100)) {
      p.max_attempts = static_cast<int>(*v);
    }
    if (auto v =
            clamped(spec, "initial_interval_ms", node, "retry.initial_interval_ms", 0, INT64_MAX)) {
      p.initial_interval_ms = *v;
    }
    if (auto v = number(spec, "backoff_factor", node, "retry.backoff_factor")) {
      // A negative factor would make negative delays; NullBoiler does not
      // clamp, but no user means it.
      if (*v >= 0) {
        p.backoff_factor = *v;
      } else {
        warn(node, "retry.backoff_factor", "retry.backoff_factor must not be negative; using 2.0");
      }
    }
    if (auto v = clamped(spec, "max_interval_ms", node, "retry.max_interval_ms", 0, INT64_MAX)) {
      p.max_interval_ms = *v;
    }
    if (auto v = number(spec, "jitter", node, "retry.jitter")) {
      double c = std::clamp(*v, 0.0, 1.0);
      if (c != *v) warn(node, "retry.jitter", "retry.jitter must be between 0 and 1; clamped");
      p.jitter = c;
    }
    return p;
  }

  void read_route(const std::string& node, const Value& spec, RouteConfig* route) {
    if (auto input = field_text(spec, "input")) route->input = *input;
    if (const Value* routes = present(spec, "routes")) {
      if (routes->is_object()) {
        for (const auto& [value, target] : routes->as_object()) {
          // Targets follow the field rule; a null target is no node at all,
          // which validation reports as invalid_route_target.
          std::string t = target.is_string() ? target.as_string()
                          : target.is_null() ? std::string()
                                             : target.to_json();
          route->routes.emplace_back(value, std::move(t));
        }
      } else {
        fail(node, "routes", "routes must be an object {value: target}");
      }
    }
    route->default_route = field_text(spec, "default");
  }

  void read_send(const std::string& node, const Value& spec, SendConfig* send) {
    auto items = field_text(spec, "items_key");
    if (!items) items = field_text(spec, "items_from");
    send->items_key = items.value_or("");
    send->target_node = field_text(spec, "target_node").value_or("");
    if (auto key = field_text(spec, "output_key")) send->output_key = *key;
    if (auto n = positive(spec, "max_concurrency", node, "max_concurrency")) {
      send->max_concurrency = static_cast<int>(std::min<int64_t>(*n, INT32_MAX));
    }
    if (auto mode = string(spec, "on_item_error", node, "on_item_error")) {
      if (*mode == "null") {
        send->null_on_item_error = true;
      } else if (*mode != "fail") {
        fail(node, "on_item_error", "on_item_error must be \"null\" or \"fail\"");
      }
    }
  }

  // `updates` / `store_updates` may be JSON or a string holding JSON.
  std::optional<Value> json_field(const std::string& node, const Value& spec,
                                  std::string_view key) {
    const Value* v = present(spec, key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return *v;
    auto parsed = parse_json(v->as_string());
    if (!parsed.ok()) {
      fail(node, std::string(key), std::string(key) + " is a string that is not valid JSON");
      return std::nullopt;
    }
    return std::move(parsed).value();
  }

  void read_transform(const std::string& node, const Value& spec, TransformConfig* transform) {
    if (auto updates = json_field(node, spec, "updates")) {
      if (updates->is_object()) {
        transform->updates = std::move(*updates);
      } else {
        fail(node, "updates", "updates must be a JSON object");
      }
    }
    if (auto store = json_field(node, spec, "store_updates")) {
      Value entries = store->is_object() ? Value::array({*store}) : *store;
      bool ok = entries.is_array();
      if (ok) {
        for (const Value& e : entries.as_array()) {
          ok = ok && e["namespace"].is_string() && e["key"].is_string() &&
               e.find("value") != nullptr;
        }
      }
      if (ok) {
        transform->store_updates = std::move(entries);
      } else {
        fail(node, "store_updates",
             "store_updates must be an object or an array of objects with string namespace, "
             "string key and value");
      }
    }
  }

  void read_subgraph(const std::string& node, const Value& spec, SubgraphConfig* subgraph) {
    subgraph->workflow_id = field_text(spec, "workflow_id").value_or("");
    subgraph->input_mapping = string_map(spec, "input_mapping", node, "input_mapping");
    if (auto key = field_text(spec, "output_key")) subgraph->output_key = *key;
  }

  void read_edges(const Array& edges, Workflow* wf) {
    for (size_t i = 0; i < edges.size(); ++i) {
      const Value& e = edges[i];
      const Value* source = e.at(0);
      const Value* target = e.at(1);
      if (source == nullptr || target == nullptr || !source->is_string() || !target->is_string()) {
        // NullBoiler skips such edges silently; a user would rather hear of them.
        if (issues_ != nullptr) {
          issues_->push_back({"invalid_edge", "", "edges[" + std::to_string(i) + "]",
                              "edge must be an array [source, target] of node names",
                              false});
        }
        continue;
      }
      Edge edge;
      edge.source = std::string(split_edge_source(source->as_string(), &edge.condition));
      edge.target = target->as_string();
      wf->edges.push_back(std::move(edge));
    }
  }

  std::vector<ValidationIssue>* issues_;
};

ValidationIssue fatal(std::string type, std::string key, std::string message) {
  return {std::move(type), "", std::move(key), std::move(message), false};
}

// Route targets are conditional edges too: each may become a graph edge.
size_t count_route_targets(const Object& nodes) {
  size_t count = 0;
  for (const auto& entry : nodes) {
    const Value& spec = entry.second;
    // Only a string can read as "route" (field_text gives other types as JSON).
    const Value* type = spec.find("type");
    if (type == nullptr || !type->is_string() || type->as_string() != "route") continue;
    const Value* routes = spec.find("routes");
    if (routes != nullptr && routes->is_object()) count += routes->as_object().size();
  }
  return count;
}

// The caps are checked on the raw JSON, before a single node is read. Route
// targets are only counted once the node count is known to be within its cap.
std::optional<ValidationIssue> check_definition_size(const Value& nodes, const Value& edges,
                                                     const WorkflowLimits& limits) {
  size_t node_count = nodes.as_object().size();
  if (auto issue = check_size(node_count, 0, limits)) return issue;
  size_t edge_count = edges.as_array().size();
  if (auto issue = check_size(node_count, edge_count, limits)) return issue;
  return check_size(node_count, edge_count + count_route_targets(nodes.as_object()), limits);
}

}  // namespace

std::optional<ValidationIssue> read_definition(const Value& definition, Workflow* out,
                                               std::vector<ValidationIssue>* issues,
                                               const WorkflowLimits& limits) {
  if (!definition.is_object()) return fatal("parse_error", "", "workflow must be a JSON object");
  const Value* nodes = definition.find("nodes");
  if (nodes == nullptr)
    return fatal("missing_field", "nodes", "workflow must have a 'nodes' object");
  if (!nodes->is_object()) return fatal("missing_field", "nodes", "'nodes' must be an object");
  const Value* edges = definition.find("edges");
  if (edges == nullptr)
    return fatal("missing_field", "edges", "workflow must have an 'edges' array");
  if (!edges->is_array()) return fatal("missing_field", "edges", "'edges' must be an array");
  if (auto too_big = check_definition_size(*nodes, *edges, limits)) return too_big;
  DefinitionReader(issues).read(definition, out);
  out->reindex();
  return std::nullopt;
}

}  // namespace workflow_internal

Result<std::shared_ptr<const Workflow>> parse_workflow(const Value& definition,
                                                       const WorkflowLimits& limits) {
  auto wf = std::make_shared<Workflow>();
  if (auto fatal = workflow_internal::read_definition(definition, wf.get(), nullptr, limits)) {
    return Status::invalid_argument(fatal->message);
  }
  return std::shared_ptr<const Workflow>(std::move(wf));
}

Result<std::shared_ptr<const Workflow>> parse_workflow_json(std::string_view json_text,
                                                            const WorkflowLimits& limits) {
  auto parsed = parse_json(json_text);
  if (!parsed.ok()) {
    return Status::invalid_argument("failed to parse workflow JSON: " + parsed.status().message());
  }
  return parse_workflow(*parsed, limits);
}

}  // namespace orch
