// SPDX-License-Identifier: MIT
//
// NullBoiler's installer entry points: `--export-manifest` prints a component
// manifest; `--from-json '<object>'` writes a config file (and, with pull mode
// enabled, a tracker workflow) from installer answers.
#include <cctype>
#include <cstdlib>
#include <iostream>

#include "cli/cli.h"
#include "orch/value.h"
#include "orch/version.h"
#include "private_files.h"

namespace orch::cli {
namespace {

std::string home_dir() {
  if (const char* h = std::getenv("ORCH_HOME"); h && *h) return h;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.orch";
  return ".orch";
}

// Installer answers may be JSON numbers/booleans or their text.
int64_t int_field(const Value& v, const char* key, int64_t fallback) {
  const Value& f = v[key];
  if (f.is_int()) return f.as_int();
  if (f.is_string()) {
    char* end = nullptr;
    long long n = std::strtoll(f.as_string().c_str(), &end, 10);
    if (!f.as_string().empty() && *end == '\0') return n;
  }
  return fallback;
}
bool bool_field(const Value& v, const char* key) {
  const Value& f = v[key];
  return (f.is_bool() && f.as_bool()) || (f.is_string() && f.as_string() == "true");
}
std::string string_field(const Value& v, const char* key, const std::string& fallback) {
  return v[key].is_string() && !v[key].as_string().empty() ? v[key].as_string() : fallback;
}

// Pretty JSON with 2-space indent, as installers expect to diff it.
void pretty(const Value& v, int indent, std::string* out) {
  std::string pad(static_cast<size_t>(indent) * 2, ' ');
  if (v.is_object() && v.size() > 0) {
    out->append("{\n");
    size_t i = 0;
    for (const auto& [k, child] : v.as_object()) {
      out->append(pad + "  " + Value(k).to_json() + ": ");
      pretty(child, indent + 1, out);
      out->append(++i < v.size() ? ",\n" : "\n");
    }
    out->append(pad + "}");
  } else {
    out->append(v.to_json());
  }
}

}  // namespace

int export_manifest_command(const Args&) {
  Value manifest = Value::object({
      {"schema_version", 1},
      {"name", "orch"},
      {"display_name", "orch"},
      {"version", std::string(orch::version())},
      {"launch", Value::object({{"command", "orch"}, {"args", Value::array({"serve"})}})},
      {"health", Value::object({{"endpoint", "/health"}, {"port_from_config", "port"}})},
      {"ports", Value::array({Value::object({{"name", "api"}, {"config_key", "port"}, {"default", 8080}})})},
      {"wizard", Value::object({{"steps", Value::array({"port", "api_token", "db_path", "tracker_enabled", "tracker_url",
                                                        "tracker_api_token", "tracker_pipeline_id", "tracker_claim_role"})}})},
      {"depends_on", Value::array()},
      {"connects_to", Value::array({Value::object({{"component", "nulltickets"}, {"role", "tracker"}})})},
  });
  std::cout << manifest.to_json() << "\n";
  return kExitOk;
}

int from_json_command(const Args& args) {
  if (args.empty()) {
    std::cerr << "usage: orch --from-json '<json object>'\n";
    return kExitUsage;
  }
  auto answers = parse_json(args[0]);
  if (!answers.ok() || !answers->is_object()) {
    std::cerr << "orch --from-json: expected a JSON object"
              << (answers.ok() ? "" : ": " + answers.status().message()) << "\n";
    return kExitFailure;
  }
  const Value& a = *answers;
  std::string home = string_field(a, "home", home_dir());
  Value config = Value::object({{"port", static_cast<long long>(int_field(a, "port", 8080))},
                                {"db", string_field(a, "db_path", "orch.db")}});
  if (a["api_token"].is_string() && !a["api_token"].as_string().empty()) config.set("api_token", a["api_token"]);
  bool tracker = bool_field(a, "tracker_enabled") && a["tracker_url"].is_string();
  std::string pipeline = string_field(a, "tracker_pipeline_id", "");
  if (tracker && pipeline.empty()) {
    std::cerr << "orch --from-json: tracker_pipeline_id is required when the tracker is enabled\n";
    return kExitFailure;
  }
  if (tracker) {
    Value t = Value::object({{"url", a["tracker_url"]},
                             {"agent_id", string_field(a, "tracker_agent_id", string_field(a, "instance_name", "orch"))},
                             {"poll_interval_ms", static_cast<long long>(int_field(a, "tracker_poll_interval_ms", 10000))},
                             {"lease_ttl_ms", static_cast<long long>(int_field(a, "tracker_lease_ttl_ms", 60000))},
                             {"heartbeat_interval_ms", static_cast<long long>(int_field(a, "tracker_heartbeat_interval_ms", 30000))},
                             {"stall_timeout_ms", static_cast<long long>(int_field(a, "tracker_stall_timeout_ms", 300000))},
                             {"workflows_dir", "workflows"}});
    if (a["tracker_api_token"].is_string()) t.set("api_token", a["tracker_api_token"]);
    t.set("concurrency", Value::object({{"max_concurrent_tasks", static_cast<long long>(int_field(a, "tracker_max_concurrent_tasks", 1))}}));
    config.set("tracker", t);
  }
  // The config holds the API token: it and everything here is private
  // (private_files.h), whatever the umask.
  std::string text;
  pretty(config, 0, &text);
  Status written = server::make_private_dirs(home);
  if (written.ok()) written = server::write_private_file(home + "/config.json", text + "\n");
  if (tracker) {
    std::string safe;
    for (char ch : pipeline) safe.push_back(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-' ? ch : '_');
    std::string role = string_field(a, "tracker_claim_role", "coder");
    Value wf = Value::object({{"id", "wf-" + safe + "-" + role},
                              {"pipeline_id", pipeline},
                              {"claim_roles", Value::array({role})},
                              {"execution", "subprocess"},
                              {"prompt_template", "Task {{task.id}}: {{task.title}}\n\n{{task.description}}\n\nMetadata:\n{{task.metadata}}"},
                              {"on_success", Value::object({{"transition_to", string_field(a, "tracker_success_trigger", "complete")}})}});
    std::string wf_text;
    pretty(wf, 0, &wf_text);
    if (written.ok()) written = server::make_private_dirs(home + "/workflows");
    if (written.ok()) written = server::write_private_file(home + "/workflows/" + safe + ".json", wf_text + "\n");
  }
  if (!written.ok()) {
    std::cerr << "orch --from-json: cannot write to " << home << ": " << written.message() << "\n";
    return kExitFailure;
  }
  std::cout << "{\"status\":\"ok\"}\n";
  return kExitOk;
}

}  // namespace orch::cli
