// SPDX-License-Identifier: MIT
#include "config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "orch/workflow.h"

namespace orch::server {
namespace {

// Every problem of a config file, in the order met: a loader notes one and
// goes on with the next key, so --check-config can list them all.
struct Problems {
  std::vector<std::string>* list;
  void note(const Status& s) {
    if (!s.ok()) list->push_back(s.message());
  }
};

Status type_error(const std::string& key, const char* want) {
  return Status::invalid_argument("config key '" + key + "' must be " + want);
}

Status read_int(const Value& v, const std::string& key, int64_t* out) {
  if (!v.is_int()) return type_error(key, "an integer");
  *out = v.as_int();
  return Status();
}

Status read_string(const Value& v, const std::string& key, std::string* out, bool nullable = true) {
  if (v.is_null() && nullable) {
    out->clear();
    return Status();
  }
  if (!v.is_string()) return type_error(key, "a string");
  *out = v.as_string();
  return Status();
}

Status read_strings(const Value& v, const std::string& key, std::vector<std::string>* out) {
  if (!v.is_array()) return type_error(key, "an array of strings");
  out->clear();
  for (const Value& s : v.as_array()) {
    if (!s.is_string() || s.as_string().empty()) return type_error(key, "an array of non-empty strings");
    out->push_back(s.as_string());
  }
  return Status();
}

void load_http(const Value& http, ServerConfig* c, Problems& p) {
  if (!http.is_object()) return p.note(type_error("http", "an object"));
  for (const auto& [hk, hv] : http.as_object()) {
    const std::string key = "http." + hk;
    if (hk == "allowed_origins") {
      p.note(read_strings(hv, key, &c->allowed_origins));
      continue;
    }
    if (hk == "allowed_hosts") {
      p.note(read_strings(hv, key, &c->allowed_hosts));
      continue;
    }
    if (hk == "allow_unauthenticated_remote") {
      if (!hv.is_bool()) p.note(type_error(key, "a boolean"));
      else c->allow_unauthenticated_remote = hv.as_bool();
      continue;
    }
    static const char* kSizes[] = {"max_body_bytes", "threads", "max_sse_clients", "max_header_count",
                                   "max_header_bytes", "max_connections_per_client", "header_timeout_ms",
                                   "body_timeout_ms"};
    if (std::find(std::begin(kSizes), std::end(kSizes), hk) == std::end(kSizes)) {
      p.note(Status::invalid_argument("unknown config key '" + key + "'"));
      continue;
    }
    if (!hv.is_int() || hv.as_int() < 1) {
      p.note(type_error(key, "a positive integer"));
      continue;
    }
    size_t n = static_cast<size_t>(hv.as_int());
    if (hk == "max_body_bytes") c->max_body_bytes = n;
    else if (hk == "threads") c->http_threads = n;
    else if (hk == "max_sse_clients") c->max_sse_clients = n;
    else if (hk == "max_header_count") c->max_header_count = n;
    else if (hk == "max_header_bytes") c->max_header_bytes = n;
    else if (hk == "max_connections_per_client") c->max_connections_per_client = n;
    else if (hk == "header_timeout_ms") c->header_timeout_ms = static_cast<int64_t>(n);
    else c->body_timeout_ms = static_cast<int64_t>(n);
  }
}

// engine.lease_ttl_ms: renewed every third of it, so below a few hundred ms
// renewals would be most of the database's work; above a day a dead
// instance's runs would wait a day.
constexpr int64_t kMinLeaseTtlMs = 300;
constexpr int64_t kMaxLeaseTtlMs = int64_t{24} * 3600 * 1000;

void load_engine(const Value& engine, ServerConfig* c, Problems& p) {
  if (!engine.is_object()) return p.note(type_error("engine", "an object"));
  for (const auto& [key, v] : engine.as_object()) {
    std::string k = "engine." + key;
    int64_t ignored = 0;
    if (key == "default_timeout_ms") {
      p.note(read_int(v, k, &c->default_timeout_ms));
    } else if (key == "shutdown_grace_ms") {
      p.note(read_int(v, k, &c->shutdown_grace_ms));
    } else if (key == "health_check_interval_ms") {
      p.note(read_int(v, k, &c->health_check_interval_ms));
    } else if (key == "worker_failure_threshold") {
      p.note(read_int(v, k, &c->worker_failure_threshold));
    } else if (key == "worker_circuit_breaker_ms") {
      p.note(read_int(v, k, &c->worker_circuit_breaker_ms));
    } else if (key == "lease_ttl_ms") {
      p.note(read_int(v, k, &c->lease_ttl_ms));
      if (c->lease_ttl_ms < kMinLeaseTtlMs || c->lease_ttl_ms > kMaxLeaseTtlMs) {
        p.note(Status::invalid_argument("config key 'engine.lease_ttl_ms' must be between " +
                                        std::to_string(kMinLeaseTtlMs) + " and " + std::to_string(kMaxLeaseTtlMs)));
      }
    } else if (key == "retention_ms") {
      p.note(read_int(v, k, &c->retention_ms));
      if (c->retention_ms < 0) p.note(Status::invalid_argument("config key 'engine.retention_ms' must be >= 0"));
    } else if (key == "max_recoveries" || key == "max_state_bytes" || key == "max_descendant_runs" ||
               key == "max_live_runs" || key == "max_prompt_bytes" || key == "max_send_items") {
      int64_t* field = key == "max_recoveries"        ? &c->max_recoveries
                       : key == "max_state_bytes"     ? &c->max_state_bytes
                       : key == "max_descendant_runs" ? &c->max_descendant_runs
                       : key == "max_prompt_bytes"    ? &c->max_prompt_bytes
                       : key == "max_send_items"      ? &c->max_send_items
                                                      : &c->max_live_runs;
      p.note(read_int(v, k, field));
      if (*field < 0) p.note(Status::invalid_argument("config key '" + k + "' must be >= 0 (0: no limit)"));
    } else if (key == "durability") {
      p.note(read_string(v, k, &c->durability, false));
      if (!durability_from_name(c->durability)) {
        p.note(Status::invalid_argument("config key 'engine.durability' must be sync, full or exit"));
      }
    } else if (key == "poll_interval_ms" || key == "default_max_attempts" || key == "retry_base_delay_ms" ||
               key == "retry_max_delay_ms" || key == "retry_jitter_ms" || key == "retry_max_elapsed_ms") {
      // NullBoiler keys with no effect here (orch is event driven; retry is per node).
      p.note(read_int(v, k, &ignored));
    } else {
      p.note(Status::invalid_argument("unknown config key '" + k + "'"));
    }
  }
}

// "postgres": {"max_connections": 8, "statement_timeout_ms": 30000, ...}
Status load_postgres(const Value& postgres, ServerConfig* c) {
  if (!postgres.is_object()) return type_error("postgres", "an object");
  PostgresStoreOptions& o = c->postgres;
  for (const auto& [key, v] : postgres.as_object()) {
    const std::string k = "postgres." + key;
    if (key == "schema") {
      ORCH_RETURN_IF_ERROR(read_string(v, k, &o.schema));
      continue;
    }
    if (key == "announce_events") {
      // "followed" (the default): only runs an event stream follows somewhere.
      if (v.is_string() && v.as_string() == "followed") {
        o.announce_events = true;
        o.announce_followed_only = true;
        continue;
      }
      if (!v.is_bool()) return type_error(k, "true, false or \"followed\"");
      o.announce_events = v.as_bool();
      o.announce_followed_only = false;
      continue;
    }
    int64_t n = 0;
    ORCH_RETURN_IF_ERROR(read_int(v, k, &n));
    if (n < 0 || n > 24LL * 3600 * 1000) return Status::invalid_argument("config key '" + k + "' is out of range");
    if (key == "max_connections" && n >= 1) o.max_connections = static_cast<size_t>(n);
    else if (key == "acquire_timeout_ms") o.acquire_timeout_ms = static_cast<int>(n);
    else if (key == "connect_timeout_s") o.connect_timeout_s = static_cast<int>(n);
    else if (key == "statement_timeout_ms") o.statement_timeout_ms = static_cast<int>(n);
    else if (key == "lock_timeout_ms") o.lock_timeout_ms = static_cast<int>(n);
    else if (key == "group_commit_writers") o.group_commit_writers = static_cast<size_t>(n);  // clamped to the pool
    else if (key == "max_connections") return Status::invalid_argument("config key '" + k + "' must be at least 1");
    else return Status::invalid_argument("unknown config key '" + k + "'");
  }
  return Status();
}

Status read_host_list(const Value& v, const std::string& key, std::vector<std::string>* out) {
  if (!v.is_array()) return type_error(key, "an array of strings");
  out->clear();
  for (const Value& entry : v.as_array()) {
    if (!entry.is_string()) return type_error(key, "an array of strings");
    out->push_back(entry.as_string());
  }
  return Status();
}

// "network": {"allow_hosts": [...], "deny_hosts": [...], "deny_link_local": true}
void load_network(const Value& network, ServerConfig* c, Problems& p) {
  if (!network.is_object()) return p.note(type_error("network", "an object"));
  for (const auto& [key, v] : network.as_object()) {
    const std::string k = "network." + key;
    if (key == "allow_hosts") {
      p.note(read_host_list(v, k, &c->network.allow_hosts));
    } else if (key == "deny_hosts") {
      p.note(read_host_list(v, k, &c->network.deny_hosts));
    } else if (key == "deny_link_local") {
      if (!v.is_bool()) p.note(type_error(k, "true or false"));
      else c->network.deny_link_local = v.as_bool();
    } else {
      p.note(Status::invalid_argument("unknown config key '" + k + "'"));
    }
  }
  Status valid = validate_host_policy(c->network);
  if (!valid.ok()) p.note(Status::invalid_argument("config key 'network': " + valid.message()));
}

// "log": {"format": "text"|"json", "level": "debug"|"info"|"warn"|"error"}
void load_log(const Value& log, ServerConfig* c, Problems& p) {
  if (!log.is_object()) return p.note(type_error("log", "an object"));
  for (const auto& [key, v] : log.as_object()) {
    if (key == "format") {
      auto f = v.is_string() ? log_format_from_name(v.as_string()) : std::nullopt;
      if (!f) p.note(type_error("log.format", "\"text\" or \"json\""));
      else c->log_format = *f;
    } else if (key == "level") {
      auto l = v.is_string() ? log_level_from_name(v.as_string()) : std::nullopt;
      if (!l) p.note(type_error("log.level", "\"debug\", \"info\", \"warn\" or \"error\""));
      else c->log_level = *l;
    } else {
      p.note(Status::invalid_argument("unknown config key 'log." + key + "'"));
    }
  }
}

}  // namespace

std::string redacted_db(const std::string& db) {
  if (!is_postgres_uri(db)) return db;
  std::string out = db;
  const size_t authority = out.find("://") + 3;
  const size_t authority_end = std::min(out.find_first_of("/?", authority), out.size());
  const size_t at = out.rfind('@', authority_end);
  if (at != std::string::npos && at >= authority) {
    const size_t colon = out.find(':', authority);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    const size_t value = p + 9;
    const size_t end = std::min(out.find('&', value), out.size());
    out.replace(value, end - value, "***");
  }
  return out;
}

Status read_config_file(const std::string& path, ServerConfig* c, std::vector<std::string>* problems) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = parse_json(ss.str());
  if (!doc.ok()) return Status::invalid_argument("config file " + path + ": " + doc.status().message());
  if (!doc->is_object()) return Status::invalid_argument("config file " + path + " must hold a JSON object");
  c->config_path = path;
  Problems p{problems};
  for (const auto& [key, v] : doc->as_object()) {
    int64_t n = 0;
    if (key == "host") {
      p.note(read_string(v, key, &c->host, false));
    } else if (key == "port") {
      Status s = read_int(v, key, &n);
      if (s.ok() && (n < 0 || n > 65535)) s = Status::invalid_argument("config key 'port' must be 0..65535");
      if (s.ok()) c->port = static_cast<int>(n);
      p.note(s);
    } else if (key == "db") {
      p.note(read_string(v, key, &c->db, false));
    } else if (key == "postgres") {
      p.note(load_postgres(v, c));
    } else if (key == "state_dir") {
      p.note(read_string(v, key, &c->state_dir));
    } else if (key == "api_token") {
      p.note(read_string(v, key, &c->api_token));
    } else if (key == "self_url") {
      std::string ignored;
      p.note(read_string(v, key, &ignored));
    } else if (key == "strategies_dir") {
      p.note(read_string(v, key, &c->strategies_dir, false));
    } else if (key == "workflows_dir") {
      p.note(read_string(v, key, &c->workflows_dir));
    } else if (key == "workers") {
      if (!v.is_array()) p.note(type_error(key, "an array"));
      else c->workers = v;
    } else if (key == "engine") {
      load_engine(v, c, p);
    } else if (key == "network") {
      load_network(v, c, p);
    } else if (key == "tracker") {
      if (!v.is_null() && !v.is_object()) {
        p.note(type_error(key, "an object or null"));
        continue;
      }
      c->tracker = v;
      if (v.is_object() && v["workflows_dir"].is_string() && c->workflows_dir.empty()) {
        c->workflows_dir = v["workflows_dir"].as_string();
      }
    } else if (key == "http") {
      load_http(v, c, p);
    } else if (key == "log") {
      load_log(v, c, p);
    } else if (key == "tracing") {
      c->tracing_section = v;  // read with the environment (resolve_tracing_config)
    } else {
      p.note(Status::invalid_argument("unknown config key '" + key + "'"));
    }
  }
  // Relative paths are relative to the config file's directory (NullBoiler).
  std::filesystem::path base = std::filesystem::path(path).parent_path();
  auto anchor = [&base](std::string* path_field) {
    std::string& v = *path_field;
    if (!v.empty() && v != ":memory:" && !is_postgres_uri(v) && std::filesystem::path(v).is_relative()) {
      v = (base / v).string();
    }
  };
  anchor(&c->db);
  anchor(&c->state_dir);
  anchor(&c->workflows_dir);
  anchor(&c->strategies_dir);
  return Status();
}

Status load_config_file(const std::string& path, ServerConfig* c) {
  std::vector<std::string> problems;
  ORCH_RETURN_IF_ERROR(read_config_file(path, c, &problems));
  if (!problems.empty()) return Status::invalid_argument(problems.front());
  return Status();
}

Status parse_serve_flags(const std::vector<std::string>& args, ServerConfig* c) {
  // The config file comes first so flags override it.
  std::string config_path;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--config") config_path = args[i + 1];
  }
  if (config_path.empty()) {
    if (const char* home = std::getenv("ORCH_HOME"); home && *home) {
      std::string candidate = std::string(home) + "/config.json";
      if (std::filesystem::exists(candidate)) config_path = candidate;
      if (c->db == "orch.db") c->db = std::string(home) + "/orch.db";
    }
  }
  if (!config_path.empty()) ORCH_RETURN_IF_ERROR(load_config_file(config_path, c));
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    auto value = [&](std::string* out) -> Status {
      if (i + 1 >= args.size()) return Status::invalid_argument(flag + " needs a value");
      *out = args[++i];
      return Status();
    };
    std::string v;
    if (flag == "--config") {
      ++i;
    } else if (flag == "--host") {
      ORCH_RETURN_IF_ERROR(value(&c->host));
    } else if (flag == "--port") {
      ORCH_RETURN_IF_ERROR(value(&v));
      char* end = nullptr;
      long port = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || port < 0 || port > 65535) return Status::invalid_argument("invalid port: " + v);
      c->port = static_cast<int>(port);
    } else if (flag == "--db") {
      ORCH_RETURN_IF_ERROR(value(&c->db));
    } else if (flag == "--state-dir") {
      ORCH_RETURN_IF_ERROR(value(&c->state_dir));
    } else if (flag == "--token") {
      ORCH_RETURN_IF_ERROR(value(&c->api_token));
    } else if (flag == "--token-file") {
      // Keeps the token out of the process list (argv is world-readable).
      ORCH_RETURN_IF_ERROR(value(&v));
      std::ifstream in(v, std::ios::binary);
      if (!in) return Status::invalid_argument("--token-file: cannot read " + v);
      std::getline(in, c->api_token);
      while (!c->api_token.empty() && (c->api_token.back() == '\r' || c->api_token.back() == ' ')) c->api_token.pop_back();
      if (c->api_token.empty()) return Status::invalid_argument("--token-file: " + v + " holds no token");
    } else if (flag == "--workflows-dir") {
      ORCH_RETURN_IF_ERROR(value(&c->workflows_dir));
    } else if (flag == "--allow-unauthenticated-remote") {
      c->allow_unauthenticated_remote = true;
    } else if (flag == "--log-format") {
      ORCH_RETURN_IF_ERROR(value(&v));
      auto f = log_format_from_name(v);
      if (!f) return Status::invalid_argument("--log-format must be text or json, not '" + v + "'");
      c->log_format = *f;
    } else if (flag == "--log-level") {
      ORCH_RETURN_IF_ERROR(value(&v));
      auto l = log_level_from_name(v);
      if (!l) return Status::invalid_argument("--log-level must be debug, info, warn or error, not '" + v + "'");
      c->log_level = *l;
    } else {
      return Status::invalid_argument("unknown flag " + flag);
    }
  }
  if (c->api_token.empty()) {
    if (const char* token = std::getenv("ORCH_API_TOKEN"); token && *token) c->api_token = token;
  }
  std::vector<std::string> problems;
  c->tracing = resolve_tracing_config(c->tracing_section, process_env(), &problems);
  if (!problems.empty()) return Status::invalid_argument(problems.front());
  return check_config(*c);
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

std::vector<std::string> config_problems(const ServerConfig& c) {
  std::vector<std::string> out;
  if (c.max_sse_clients + kReservedHttpThreads > c.http_threads) {
    out.push_back("http.max_sse_clients (" + std::to_string(c.max_sse_clients) + ") must leave " +
                  std::to_string(kReservedHttpThreads) + " of http.threads (" + std::to_string(c.http_threads) +
                  ") to the rest of the API: every stream holds a thread");
  }
  if (!is_loopback_host(c.host) && c.api_token.empty() && !c.allow_unauthenticated_remote) {
    out.push_back("listening on " + c.host +
                  " without an API token would expose the API to the network: set "
                  "api_token (--token), or pass --allow-unauthenticated-remote");
  }
  return out;
}

Status check_config(const ServerConfig& c) {
  std::vector<std::string> problems = config_problems(c);
  if (!problems.empty()) return Status::invalid_argument(problems.front());
  return Status();
}

}  // namespace orch::server
