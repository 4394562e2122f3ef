// SPDX-License-Identifier: MIT
#include "pull/tracker_config.h"

#include <cstdlib>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "orch/url.h"

namespace orch::server {
namespace {

namespace fs = std::filesystem;

// Reads the members of one JSON object strictly: each known key is handled
// by a callback, and any key nobody asked for is an error naming its path.
class ObjectReader {
 public:
  ObjectReader(const Value& v, std::string path) : v_(v), path_(std::move(path)) {}

  Status check_object() const {
    if (!v_.is_object()) return Status::invalid_argument(path_ + ": expected an object");
    return Status();
  }
  const std::string& path() const { return path_; }
  std::string child(const std::string& key) const { return path_ + "." + key; }
  const Value* get(const std::string& key) {
    seen_.push_back(key);
    const Value* v = v_.find(key);
    return v && !v->is_null() ? v : nullptr;
  }
  Status finish() const {
    for (const auto& [key, value] : v_.as_object()) {
      (void)value;
      if (std::find(seen_.begin(), seen_.end(), key) == seen_.end()) {
        return Status::invalid_argument(child(key) + ": unknown key");
      }
    }
    return Status();
  }

 private:
  const Value& v_;
  std::string path_;
  std::vector<std::string> seen_;
};

Status type_error(const std::string& path, const char* expected) {
  return Status::invalid_argument(path + ": expected " + expected);
}

Status read_string(ObjectReader& r, const std::string& key, std::string* out, bool allow_empty = true) {
  const Value* v = r.get(key);
  if (!v) return Status();
  if (!v->is_string()) return type_error(r.child(key), "a string");
  if (!allow_empty && v->as_string().empty()) return type_error(r.child(key), "a non-empty string");
  *out = v->as_string();
  return Status();
}

// Integers in [min, max]. Negative limits crashed NullBoiler; here they are errors.
Status read_int(ObjectReader& r, const std::string& key, int64_t* out, int64_t min, int64_t max = INT64_MAX) {
  const Value* v = r.get(key);
  if (!v) return Status();
  if (!v->is_int() || v->as_int() < min || v->as_int() > max) {
    std::string what = "an integer";
    if (min == 0) what = "a non-negative integer";
    if (min == 1) what = "a positive integer";
    if (max != INT64_MAX) what += " <= " + std::to_string(max);
    return Status::invalid_argument(r.child(key) + ": expected " + what);
  }
  *out = v->as_int();
  return Status();
}

Status read_bool(ObjectReader& r, const std::string& key, bool* out) {
  const Value* v = r.get(key);
  if (!v) return Status();
  if (!v->is_bool()) return type_error(r.child(key), "true or false");
  *out = v->as_bool();
  return Status();
}

Status read_string_list(ObjectReader& r, const std::string& key, std::vector<std::string>* out) {
  const Value* v = r.get(key);
  if (!v) return Status();
  if (!v->is_array()) return type_error(r.child(key), "an array of strings");
  out->clear();
  for (size_t i = 0; i < v->size(); ++i) {
    const Value& item = *v->at(i);
    if (!item.is_string()) return type_error(r.child(key) + "[" + std::to_string(i) + "]", "a string");
    out->push_back(item.as_string());
  }
  return Status();
}

Status read_limits(ObjectReader& r, const std::string& key, std::map<std::string, int64_t>* out) {
  const Value* v = r.get(key);
  if (!v) return Status();
  if (!v->is_object()) return type_error(r.child(key), "an object of non-negative integers");
  for (const auto& [name, limit] : v->as_object()) {
    if (!limit.is_int() || limit.as_int() < 0) {
      return type_error(r.child(key) + "." + name, "a non-negative integer");
    }
    (*out)[name] = limit.as_int();
  }
  return Status();
}

std::string default_workspace_root() {
  if (const char* home = std::getenv("ORCH_HOME"); home && *home) return std::string(home) + "/workspaces";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.orch/workspaces";
  return "orch-workspaces";
}

std::string anchored(const std::string& path, const std::string& base_dir) {
  if (path.empty() || fs::path(path).is_absolute() || base_dir.empty()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

Result<std::shared_ptr<const Template>> compile(const std::string& text, const std::string& path) {
  auto t = Template::compile(text);
  if (!t.ok()) return Status::invalid_argument(path + ": " + t.status().message());
  return std::make_shared<const Template>(std::move(t).value());
}

Status parse_concurrency(const Value& v, const std::string& path, TrackerConfig* c) {
  ObjectReader r(v, path);
  ORCH_RETURN_IF_ERROR(r.check_object());
  ORCH_RETURN_IF_ERROR(read_int(r, "max_concurrent_tasks", &c->max_concurrent_tasks, 0));
  ORCH_RETURN_IF_ERROR(read_limits(r, "per_pipeline", &c->per_pipeline));
  ORCH_RETURN_IF_ERROR(read_limits(r, "per_role", &c->per_role));
  ORCH_RETURN_IF_ERROR(read_limits(r, "per_state", &c->per_state));
  return r.finish();
}

Status parse_workspace(const Value& v, const std::string& path, TrackerConfig* c) {
  ObjectReader r(v, path);
  ORCH_RETURN_IF_ERROR(r.check_object());
  ORCH_RETURN_IF_ERROR(read_string(r, "root", &c->workspace_root, false));
  ORCH_RETURN_IF_ERROR(read_int(r, "hook_timeout_ms", &c->hook_timeout_ms, 1));
  if (const Value* hooks = r.get("hooks")) {
    ObjectReader h(*hooks, r.child("hooks"));
    ORCH_RETURN_IF_ERROR(h.check_object());
    ORCH_RETURN_IF_ERROR(read_string(h, "after_create", &c->hooks.after_create));
    ORCH_RETURN_IF_ERROR(read_string(h, "before_run", &c->hooks.before_run));
    ORCH_RETURN_IF_ERROR(read_string(h, "after_run", &c->hooks.after_run));
    ORCH_RETURN_IF_ERROR(read_string(h, "before_remove", &c->hooks.before_remove));
    ORCH_RETURN_IF_ERROR(h.finish());
  }
  return r.finish();
}

Status parse_subprocess(const Value& v, const std::string& path, TrackerConfig* c) {
  ObjectReader r(v, path);
  ORCH_RETURN_IF_ERROR(r.check_object());
  ORCH_RETURN_IF_ERROR(read_string(r, "command", &c->command, false));
  ORCH_RETURN_IF_ERROR(read_string_list(r, "args", &c->args));
  ORCH_RETURN_IF_ERROR(read_string_list(r, "inherit_env", &c->inherit_env));
  // The port range is base_port .. base_port+999.
  ORCH_RETURN_IF_ERROR(read_int(r, "base_port", &c->base_port, 1, 65535 - 999));
  ORCH_RETURN_IF_ERROR(read_int(r, "health_check_retries", &c->health_check_retries, 1));
  ORCH_RETURN_IF_ERROR(read_int(r, "health_check_interval_ms", &c->health_check_interval_ms, 1));
  ORCH_RETURN_IF_ERROR(read_int(r, "max_turns", &c->max_turns, 1, 1000));
  ORCH_RETURN_IF_ERROR(read_int(r, "turn_timeout_ms", &c->turn_timeout_ms, 1));
  ORCH_RETURN_IF_ERROR(read_string(r, "continuation_prompt", &c->continuation_prompt));
  ORCH_RETURN_IF_ERROR(compile(c->continuation_prompt, r.child("continuation_prompt")).status());
  return r.finish();
}

}  // namespace

Result<TrackerConfig> parse_tracker_config(const Value& tracker, const std::string& base_dir) {
  TrackerConfig c;
  ObjectReader r(tracker, "tracker");
  ORCH_RETURN_IF_ERROR(r.check_object());
  if (const Value* url = r.get("url")) {
    if (!url->is_string()) return type_error("tracker.url", "a string or null");
    const std::string& u = url->as_string();
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) {
      return Status::invalid_argument("tracker.url: expected an http:// or https:// URL, got '" + u + "'");
    }
    if (Result<Url> parsed = parse_http_url(u); !parsed.ok()) {
      return Status::invalid_argument("tracker.url: " + parsed.status().message());
    }
    c.url = u;
    while (!c.url.empty() && c.url.back() == '/') c.url.pop_back();
  }
  ORCH_RETURN_IF_ERROR(read_string(r, "api_token", &c.api_token));
  ORCH_RETURN_IF_ERROR(read_int(r, "poll_interval_ms", &c.poll_interval_ms, 1));
  ORCH_RETURN_IF_ERROR(read_string(r, "agent_id", &c.agent_id, false));
  if (const Value* v = r.get("concurrency")) ORCH_RETURN_IF_ERROR(parse_concurrency(*v, r.child("concurrency"), &c));
  if (const Value* v = r.get("workspace")) ORCH_RETURN_IF_ERROR(parse_workspace(*v, r.child("workspace"), &c));
  if (const Value* v = r.get("subprocess")) ORCH_RETURN_IF_ERROR(parse_subprocess(*v, r.child("subprocess"), &c));
  ORCH_RETURN_IF_ERROR(read_int(r, "stall_timeout_ms", &c.stall_timeout_ms, 1));
  ORCH_RETURN_IF_ERROR(read_int(r, "lease_ttl_ms", &c.lease_ttl_ms, 1));
  ORCH_RETURN_IF_ERROR(read_int(r, "heartbeat_interval_ms", &c.heartbeat_interval_ms, 1));
  ORCH_RETURN_IF_ERROR(read_int(r, "http_timeout_ms", &c.http_timeout_ms, 1));
  ORCH_RETURN_IF_ERROR(read_string_list(r, "terminal_stages", &c.terminal_stages));
  ORCH_RETURN_IF_ERROR(read_string(r, "workflows_dir", &c.workflows_dir, false));
  if (const Value* v = r.get("pipelines")) {
    if (!v->is_array()) return type_error("tracker.pipelines", "an array of pipeline workflow objects");
    c.pipelines = *v;
  }
  ORCH_RETURN_IF_ERROR(r.finish());
  // A lease that can expire between two heartbeats would be lost while the
  // task is healthy; refuse the combination instead of flapping at run time.
  if (c.heartbeat_interval_ms >= c.lease_ttl_ms) {
    return Status::invalid_argument("tracker.heartbeat_interval_ms (" + std::to_string(c.heartbeat_interval_ms) +
                                    ") must be less than tracker.lease_ttl_ms (" + std::to_string(c.lease_ttl_ms) + ")");
  }
  if (c.workspace_root.empty()) c.workspace_root = default_workspace_root();
  c.workspace_root = anchored(c.workspace_root, base_dir);
  c.workflows_dir = anchored(c.workflows_dir, base_dir);
  return c;
}

Result<PipelineDef> parse_pipeline_def(const Value& doc, const std::string& source) {
  PipelineDef d;
  d.source = source;
  ObjectReader r(doc, source);
  ORCH_RETURN_IF_ERROR(r.check_object());
  ORCH_RETURN_IF_ERROR(read_string(r, "id", &d.id));
  ORCH_RETURN_IF_ERROR(read_string(r, "pipeline_id", &d.pipeline_id));
  if (d.pipeline_id.empty()) return Status::invalid_argument(source + ": pipeline_id is required");
  ORCH_RETURN_IF_ERROR(read_string_list(r, "claim_roles", &d.claim_roles));
  for (const std::string& role : d.claim_roles) {
    if (role.empty()) return Status::invalid_argument(r.child("claim_roles") + ": roles must not be empty");
  }
  ORCH_RETURN_IF_ERROR(read_string(r, "execution", &d.execution));
  if (d.execution != "subprocess" && d.execution != "dispatch") {
    return Status::invalid_argument(r.child("execution") + ": expected \"subprocess\" or \"dispatch\", got \"" +
                                    d.execution + "\"");
  }
  if (const Value* v = r.get("subprocess")) {
    ObjectReader s(*v, r.child("subprocess"));
    ORCH_RETURN_IF_ERROR(s.check_object());
    ORCH_RETURN_IF_ERROR(read_string(s, "command", &d.command));
    if (s.get("args")) {
      std::vector<std::string> args;
      ORCH_RETURN_IF_ERROR(read_string_list(s, "args", &args));
      d.args = std::move(args);
    }
    int64_t n = 0;
    if (s.get("max_turns")) {
      ORCH_RETURN_IF_ERROR(read_int(s, "max_turns", &n, 1, 1000));
      d.max_turns = n;
    }
    if (s.get("turn_timeout_ms")) {
      ORCH_RETURN_IF_ERROR(read_int(s, "turn_timeout_ms", &n, 1));
      d.turn_timeout_ms = n;
    }
    std::string text;
    if (s.get("continuation_prompt")) {
      ORCH_RETURN_IF_ERROR(read_string(s, "continuation_prompt", &text));
      d.continuation_prompt = text;
    }
    ORCH_RETURN_IF_ERROR(s.finish());
  }
  if (const Value* v = r.get("dispatch")) {
    ObjectReader s(*v, r.child("dispatch"));
    ORCH_RETURN_IF_ERROR(s.check_object());
    ORCH_RETURN_IF_ERROR(read_string_list(s, "worker_tags", &d.worker_tags));
    ORCH_RETURN_IF_ERROR(read_string(s, "protocol", &d.protocol));
    ORCH_RETURN_IF_ERROR(s.finish());
  }
  ORCH_RETURN_IF_ERROR(read_string(r, "workflow_id", &d.workflow_id));
  if (const Value* v = r.get("workflow")) {
    if (!v->is_object() || !(*v)["nodes"].is_object()) {
      return type_error(r.child("workflow"), "a graph workflow object (with \"nodes\")");
    }
    d.workflow = *v;
  }
  if (r.get("prompt_template")) {
    std::string text;
    ORCH_RETURN_IF_ERROR(read_string(r, "prompt_template", &text));
    d.prompt_template = text;
  }
  for (const char* key : {"on_success", "on_failure"}) {
    const Value* v = r.get(key);
    if (!v) continue;
    ObjectReader s(*v, r.child(key));
    ORCH_RETURN_IF_ERROR(s.check_object());
    bool is_success = std::string(key) == "on_success";
    ORCH_RETURN_IF_ERROR(read_string(s, "transition_to", is_success ? &d.success_trigger : &d.failure_trigger));
    bool retry = false;
    ORCH_RETURN_IF_ERROR(read_bool(s, "retry", &retry));
    if (!is_success) d.retry_on_failure = retry;
    ORCH_RETURN_IF_ERROR(s.finish());
  }
  if (const Value* v = r.get("retry")) {
    ObjectReader s(*v, r.child("retry"));
    ORCH_RETURN_IF_ERROR(s.check_object());
    ORCH_RETURN_IF_ERROR(read_int(s, "max_attempts", &d.retry_max_attempts, 1, 1000));
    ORCH_RETURN_IF_ERROR(read_int(s, "backoff_base_ms", &d.retry_backoff_base_ms, 0));
    ORCH_RETURN_IF_ERROR(read_int(s, "backoff_max_ms", &d.retry_backoff_max_ms, 0));
    ORCH_RETURN_IF_ERROR(s.finish());
  }
  ORCH_RETURN_IF_ERROR(r.finish());

  // What each execution mode needs, checked now rather than at the first claim.
  if (d.execution == "subprocess") {
    if (!d.prompt_template) return Status::invalid_argument(source + ": subprocess execution needs a prompt_template");
  } else if (d.workflow_id.empty() && d.workflow.is_null() && !d.prompt_template) {
    return Status::invalid_argument(source + ": dispatch execution needs a workflow_id, a workflow or a prompt_template");
  }
  if (!d.workflow_id.empty() && !d.workflow.is_null()) {
    return Status::invalid_argument(source + ": give either workflow_id or workflow, not both");
  }
  if (d.prompt_template) {
    ORCH_ASSIGN_OR_RETURN(d.prompt, compile(*d.prompt_template, r.child("prompt_template")));
  }
  if (d.continuation_prompt) {
    ORCH_ASSIGN_OR_RETURN(d.continuation, compile(*d.continuation_prompt, r.child("subprocess.continuation_prompt")));
  }
  if (d.id.empty()) d.id = "wf-" + d.pipeline_id;
  return d;
}

Result<std::vector<PipelineDef>> load_pipeline_defs(const TrackerConfig& config) {
  std::vector<PipelineDef> defs;
  auto add = [&defs](PipelineDef d) {
    for (PipelineDef& existing : defs) {
      if (existing.pipeline_id == d.pipeline_id) {
        existing = std::move(d);
        return;
      }
    }
    defs.push_back(std::move(d));
  };
  std::error_code ec;
  if (fs::is_directory(config.workflows_dir, ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(config.workflows_dir, ec)) {
      if (entry.path().extension() == ".json" && entry.is_regular_file(ec)) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());  // "later files win" must not depend on readdir order
    for (const fs::path& file : files) {
      std::ifstream in(file, std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) return Status::invalid_argument(file.string() + ": cannot read");
      auto doc = parse_json(text.str());
      // Graph workflows share the directory; only files naming a pipeline are ours.
      if (!doc.ok() || !doc->is_object() || !doc->find("pipeline_id")) continue;
      ORCH_ASSIGN_OR_RETURN(PipelineDef d, parse_pipeline_def(*doc, file.string()));
      add(std::move(d));
    }
  }
  for (size_t i = 0; i < config.pipelines.size(); ++i) {
    ORCH_ASSIGN_OR_RETURN(PipelineDef d,
                          parse_pipeline_def(*config.pipelines.at(i), "tracker.pipelines[" + std::to_string(i) + "]"));
    add(std::move(d));
  }
  return defs;
}

}  // namespace orch::server
