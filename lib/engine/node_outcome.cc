// SPDX-License-Identifier: MIT
#include "engine/node_outcome.h"

namespace orch::internal {

Value NodeOutcome::to_value() const {
  // The kinds are shared strings: one of these is written per node.
  static const Value* const kKinds[] = {new Value("ok"), new Value("failed"), new Value("interrupt")};
  Value v = Value::object({{"kind", *kKinds[kind == Kind::kOk ? 0 : kind == Kind::kFailed ? 1 : 2]},
                           {"updates", Value(Array(updates))}});
  if (route) v.set("route", *route);
  if (has_goto) {
    Value g = Value::array();
    for (const std::string& n : goto_nodes) g.push_back(n);
    v.set("goto", std::move(g));
  }
  if (!error.empty()) v.set("error", error);
  if (!usage.is_null()) v.set("usage", usage);
  if (!custom.is_null()) v.set("custom", custom);
  return v;
}

NodeOutcome NodeOutcome::from_value(const Value& v) {
  NodeOutcome o;
  const std::string kind = v["kind"].get_string("ok");
  o.kind = kind == "failed" ? Kind::kFailed : kind == "interrupt" ? Kind::kInterrupt : Kind::kOk;
  if (v["updates"].is_array()) o.updates.assign(v["updates"].as_array().begin(), v["updates"].as_array().end());
  if (v["route"].is_string()) o.route = v["route"].as_string();
  if (v["goto"].is_array()) {
    o.has_goto = true;
    for (const Value& n : v["goto"].as_array()) o.goto_nodes.push_back(n.get_string(""));
  }
  o.error = v["error"].get_string("");
  o.usage = v["usage"];
  o.custom = v["custom"];
  return o;
}

}  // namespace orch::internal
