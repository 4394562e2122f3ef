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

Status load_http(const Value& http, ServerConfig* c) {
  if (!http.is_object()) return type_error("http", "an object");
  for (const auto& [hk, hv] : http.as_object()) {
    const std::string key = "http." + hk;
    if (hk == "allowed_origins") {
      ORCH_RETURN_IF_ERROR(read_strings(hv, key, &c->allowed_origins));
      continue;
    }
    if (hk == "allowed_hosts") {
      ORCH_RETURN_IF_ERROR(read_strings(hv, key, &c->allowed_hosts));
      continue;
    }
    if (hk == "allow_unauthenticated_remote") {
      if (!hv.is_bool()) return type_error(key, "a boolean");
      c->allow_unauthenticated_remote = hv.as_bool();
      continue;
    }
    if (!hv.is_int() || hv.as_int() < 1) return type_error(key, "a positive integer");
    size_t n = static_cast<size_t>(hv.as_int());
    if (hk == "max_body_bytes") c->max_body_bytes = n;
    else if (hk == "threads") c->http_threads = n;
    else if (hk == "max_sse_clients") c->max_sse_clients = n;
    else if (hk == "max_header_count") c->max_header_count = n;
    else if (hk == "max_header_bytes") c->max_header_bytes = n;
    else if (hk == "max_connections_per_client") c->max_connections_per_client = n;
    else if (hk == "header_timeout_ms") c->header_timeout_ms = static_cast<int64_t>(n);
    else if (hk == "body_timeout_ms") c->body_timeout_ms = static_cast<int64_t>(n);
    else return Status::invalid_argument("unknown config key '" + key + "'");
  }
  return Status();
}

Status load_engine(const Value& engine, ServerConfig* c) {
  if (!engine.is_object()) return type_error("engine", "an object");
  for (const auto& [key, v] : engine.as_object()) {
    std::string k = "engine." + key;
    int64_t ignored = 0;
    if (key == "default_timeout_ms") {
      ORCH_RETURN_IF_ERROR(read_int(v, k, &c->default_timeout_ms));
    } else if (key == "shutdown_grace_ms") {
      ORCH_RETURN_IF_ERROR(read_int(v, k, &c->shutdown_grace_ms));
    } else if (key == "health_check_interval_ms") {
      ORCH_RETURN_IF_ERROR(read_int(v, k, &c->health_check_interval_ms));
    } else if (key == "worker_failure_threshold") {
      ORCH_RETURN_IF_ERROR(read_int(v, k, &c->worker_failure_threshold));
    } else if (key == "worker_circuit_breaker_ms") {
      ORCH_RETURN_IF_ERROR(read_int(v, k, &c->worker_circuit_breaker_ms));
    } else if (key == "retention_ms") {
      ORCH_RETURN_IF_ERROR(read_int(v, k, &c->retention_ms));
      if (c->retention_ms < 0) return Status::invalid_argument("config key 'engine.retention_ms' must be >= 0");
    } else if (key == "max_recoveries" || key == "max_state_bytes" || key == "max_descendant_runs" ||
               key == "max_live_runs" || key == "max_prompt_bytes") {
      int64_t* field = key == "max_recoveries"        ? &c->max_recoveries
                       : key == "max_state_bytes"     ? &c->max_state_bytes
                       : key == "max_descendant_runs" ? &c->max_descendant_runs
                       : key == "max_prompt_bytes"    ? &c->max_prompt_bytes
                                                      : &c->max_live_runs;
      ORCH_RETURN_IF_ERROR(read_int(v, k, field));
      if (*field < 0) return Status::invalid_argument("config key '" + k + "' must be >= 0 (0: no limit)");
    } else if (key == "durability") {
      ORCH_RETURN_IF_ERROR(read_string(v, k, &c->durability, false));
      if (!durability_from_name(c->durability)) {
        return Status::invalid_argument("config key 'engine.durability' must be sync, full or exit");
      }
    } else if (key == "poll_interval_ms" || key == "default_max_attempts" || key == "retry_base_delay_ms" ||
               key == "retry_max_delay_ms" || key == "retry_jitter_ms" || key == "retry_max_elapsed_ms") {
      // NullBoiler keys with no effect here (orch is event driven; retry is per node).
      ORCH_RETURN_IF_ERROR(read_int(v, k, &ignored));
    } else {
      return Status::invalid_argument("unknown config key '" + k + "'");
    }
  }
  return Status();
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
    int64_t n = 0;
    ORCH_RETURN_IF_ERROR(read_int(v, k, &n));
    if (n < 0 || n > 24LL * 3600 * 1000) return Status::invalid_argument("config key '" + k + "' is out of range");
    if (key == "max_connections" && n >= 1) o.max_connections = static_cast<size_t>(n);
    else if (key == "acquire_timeout_ms") o.acquire_timeout_ms = static_cast<int>(n);
    else if (key == "connect_timeout_s") o.connect_timeout_s = static_cast<int>(n);
    else if (key == "statement_timeout_ms") o.statement_timeout_ms = static_cast<int>(n);
    else if (key == "lock_timeout_ms") o.lock_timeout_ms = static_cast<int>(n);
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
Status load_network(const Value& network, ServerConfig* c) {
  if (!network.is_object()) return type_error("network", "an object");
  for (const auto& [key, v] : network.as_object()) {
    const std::string k = "network." + key;
    if (key == "allow_hosts") {
      ORCH_RETURN_IF_ERROR(read_host_list(v, k, &c->network.allow_hosts));
    } else if (key == "deny_hosts") {
      ORCH_RETURN_IF_ERROR(read_host_list(v, k, &c->network.deny_hosts));
    } else if (key == "deny_link_local") {
      if (!v.is_bool()) return type_error(k, "true or false");
      c->network.deny_link_local = v.as_bool();
    } else {
      return Status::invalid_argument("unknown config key '" + k + "'");
    }
  }
  Status valid = validate_host_policy(c->network);
  if (!valid.ok()) return Status::invalid_argument("config key 'network': " + valid.message());
  return Status();
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

Status load_config_file(const std::string& path, ServerConfig* c) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = parse_json(ss.str());
  if (!doc.ok()) return Status::invalid_argument("config file " + path + ": " + doc.status().message());
  if (!doc->is_object()) return Status::invalid_argument("config file " + path + " must hold a JSON object");
  c->config_path = path;
  for (const auto& [key, v] : doc->as_object()) {
    int64_t n = 0;
    if (key == "host") {
      ORCH_RETURN_IF_ERROR(read_string(v, key, &c->host, false));
    } else if (key == "port") {
      ORCH_RETURN_IF_ERROR(read_int(v, key, &n));
      if (n < 0 || n > 65535) return Status::invalid_argument("config key 'port' must be 0..65535");
      c->port = static_cast<int>(n);
    } else if (key == "db") {
      ORCH_RETURN_IF_ERROR(read_string(v, key, &c->db, false));
    } else if (key == "postgres") {
      ORCH_RETURN_IF_ERROR(load_postgres(v, c));
    } else if (key == "state_dir") {
      ORCH_RETURN_IF_ERROR(read_string(v, key, &c->state_dir));
    } else if (key == "api_token") {
      ORCH_RETURN_IF_ERROR(read_string(v, key, &c->api_token));
    } else if (key == "self_url") {
      std::string ignored;
      ORCH_RETURN_IF_ERROR(read_string(v, key, &ignored));
    } else if (key == "strategies_dir") {
      ORCH_RETURN_IF_ERROR(read_string(v, key, &c->strategies_dir, false));
    } else if (key == "workflows_dir") {
      ORCH_RETURN_IF_ERROR(read_string(v, key, &c->workflows_dir));
    } else if (key == "workers") {
      if (!v.is_array()) return type_error(key, "an array");
      c->workers = v;
    } else if (key == "engine") {
      ORCH_RETURN_IF_ERROR(load_engine(v, c));
    } else if (key == "network") {
      ORCH_RETURN_IF_ERROR(load_network(v, c));
    } else if (key == "tracker") {
      if (!v.is_null() && !v.is_object()) return type_error(key, "an object or null");
      c->tracker = v;
      if (v.is_object() && v["workflows_dir"].is_string() && c->workflows_dir.empty()) {
        c->workflows_dir = v["workflows_dir"].as_string();
      }
    } else if (key == "http") {
      ORCH_RETURN_IF_ERROR(load_http(v, c));
    } else {
      return Status::invalid_argument("unknown config key '" + key + "'");
    }
  }
  // Relative paths are relative to the config file's directory (NullBoiler).
  std::filesystem::path base = std::filesystem::path(path).parent_path();
  auto anchor = [&base](std::string* p) {
    if (!p->empty() && *p != ":memory:" && !is_postgres_uri(*p) && std::filesystem::path(*p).is_relative()) {
      *p = (base / *p).string();
    }
  };
  anchor(&c->db);
  anchor(&c->state_dir);
  anchor(&c->workflows_dir);
  anchor(&c->strategies_dir);
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
    } else {
      return Status::invalid_argument("unknown flag " + flag);
    }
  }
  if (c->api_token.empty()) {
    if (const char* token = std::getenv("ORCH_API_TOKEN"); token && *token) c->api_token = token;
  }
  return check_config(*c);
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

Status check_config(const ServerConfig& c) {
  if (c.max_sse_clients + kReservedHttpThreads > c.http_threads) {
    return Status::invalid_argument(
        "http.max_sse_clients (" + std::to_string(c.max_sse_clients) + ") must leave " +
        std::to_string(kReservedHttpThreads) + " of http.threads (" + std::to_string(c.http_threads) +
        ") to the rest of the API: every stream holds a thread");
  }
  if (!is_loopback_host(c.host) && c.api_token.empty() && !c.allow_unauthenticated_remote) {
    return Status::invalid_argument("listening on " + c.host +
                                    " without an API token would expose the API to the network: set "
                                    "api_token (--token), or pass --allow-unauthenticated-remote");
  }
  return Status();
}

}  // namespace orch::server
