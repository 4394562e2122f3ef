// SPDX-License-Identifier: MIT
// From a worker reply to state updates and control effects (SPEC §6, NullBoiler
// engine reference §2.8), shared by every protocol and by in-process nodes.
#include "orch/state.h"

namespace orch {
namespace {

// A control field from the envelope, else from the parsed output object.
const Value* control_field(const Value& envelope, const Value& parsed, std::string_view name) {
  if (const Value* v = envelope.find(name)) return v;
  return parsed.find(name);
}

std::string_view strip_state_prefix(std::string_view path) {
  constexpr std::string_view kPrefix = "state.";
  if (path.substr(0, kPrefix.size()) == kPrefix) path.remove_prefix(kPrefix.size());
  return path;
}

}  // namespace

ReplyEffects interpret_reply(std::string_view output, const Value& envelope,
                             const TaskConfig& config) {
  ReplyEffects effects;
  // Parse the output text once; most control fields may hide inside it.
  Value parsed;
  bool output_is_json = false;
  if (!output.empty()) {
    Result<Value> r = parse_json(output);
    if (r.ok()) {
      parsed = std::move(r).value();
      output_is_json = true;
    }
  }
  const Value& parsed_object = parsed.is_object() ? parsed : Value::object();

  if (const Value* g = control_field(envelope, parsed_object, "goto")) {
    if (g->is_string()) {
      effects.goto_nodes.push_back(g->as_string());
    } else if (g->is_array()) {
      for (const Value& t : g->as_array()) {
        if (t.is_string()) effects.goto_nodes.push_back(t.as_string());
      }
    }
    effects.has_goto = !effects.goto_nodes.empty();
  }
  if (const Value* d = control_field(envelope, parsed_object, "done")) effects.done = d->get_bool(false);
  if (const Value* u = control_field(envelope, parsed_object, "usage"); u && u->is_object()) {
    int64_t in = (*u)["prompt_tokens"].get_int(0);
    int64_t out = (*u)["completion_tokens"].get_int(0);
    in = (*u)["input_tokens"].get_int(in);
    out = (*u)["output_tokens"].get_int(out);
    if (in != 0 || out != 0) {
      effects.usage = Value::object({{"input_tokens", static_cast<long long>(in)},
                                     {"output_tokens", static_cast<long long>(out)},
                                     {"total_tokens", static_cast<long long>(in + out)}});
    }
  }
  if (const Value* r = control_field(envelope, parsed_object, "rate_limit"); r && r->is_object()) {
    int64_t remaining = (*r)["remaining"].get_int(0);
    int64_t limit = (*r)["limit"].get_int(0);
    if (remaining != 0 || limit != 0) {
      effects.rate_limit = Value::object({{"remaining", static_cast<long long>(remaining)},
                                          {"limit", static_cast<long long>(limit)},
                                          {"reset_ms", static_cast<long long>((*r)["reset_ms"].get_int(0))}});
    }
  }
  if (const Value* m = control_field(envelope, parsed_object, "ui_messages"); m && m->is_array()) {
    effects.ui_messages = *m;
  }
  if (const Value* m = control_field(envelope, parsed_object, "stream_messages"); m && m->is_array()) {
    effects.stream_messages = *m;
  }

  if (const Value* su = control_field(envelope, parsed_object, "state_updates")) {
    // A non-object state_updates changes nothing (NullBoiler compatible).
    if (su->is_object()) effects.updates = *su;
    effects.has_state_updates = true;
    return effects;
  }
  if (config.output_key || !config.output_mapping.empty()) {
    Object& updates = effects.updates.mutable_object();
    if (config.output_key) {
      updates.set(*config.output_key, output_is_json ? parsed : Value(std::string(output)));
    }
    if (output_is_json) {
      for (const auto& [key, path] : config.output_mapping) {
        if (const Value* v = parsed.find_path(strip_state_prefix(path))) updates.set(key, *v);
      }
    }
    return effects;
  }
  effects.updates.set("output", std::string(output));
  return effects;
}

}  // namespace orch
