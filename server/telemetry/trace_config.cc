// SPDX-License-Identifier: MIT
#include "telemetry/trace_config.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "orch/url.h"

namespace orch::server {
namespace {

const char* kSamplers[] = {"always_on",  "always_off", "traceidratio", "parentbased_always_on",
                           "parentbased_always_off", "parentbased_traceidratio"};

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding as the OTel spec asks for header and resource values;
// false for a malformed escape.
bool percent_decode(const std::string& in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;  // "%" or "%4" at the end
    const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool is_token(const std::string& name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

bool safe_header_value(const std::string& v) {
  for (unsigned char c : v) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return v.size() <= kMaxTraceHeaderBytes;
}

// "k1=v1,k2=v2" (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES). A
// problem names the entry by its number, never its text: headers hold
// credentials.
bool parse_pairs(const std::string& text, std::vector<std::pair<std::string, std::string>>* out, std::string* why) {
  size_t i = 0;
  int entry = 0;
  while (i <= text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string item = trim(text.substr(i, j - i));
    i = j + 1;
    if (item.empty()) continue;
    ++entry;
    size_t eq = item.find('=');
    if (eq == std::string::npos) {
      *why = "entry " + std::to_string(entry) + " has no '=' (expected key=value,key2=value2)";
      return false;
    }
    std::string key, value;
    if (!percent_decode(trim(item.substr(0, eq)), &key) || !percent_decode(trim(item.substr(eq + 1)), &value)) {
      *why = "entry " + std::to_string(entry) + " has a malformed %-escape";
      return false;
    }
    if (key.empty()) {
      *why = "entry " + std::to_string(entry) + " has an empty key";
      return false;
    }
    out->emplace_back(std::move(key), std::move(value));
  }
  return true;
}

bool parse_int(const std::string& text, int64_t lo, int64_t hi, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Reads the configuration in two layers: the environment, then the file.
class Resolver {
 public:
  Resolver(const EnvLookup& env, std::vector<std::string>* problems) : env_(env), problems_(problems) {}

  void read_env(TracingConfig* c) {
    if (const char* v = get("OTEL_SDK_DISABLED"); v && lower(trim(v)) == "true") env_disabled_ = true;
    if (const char* v = get("OTEL_TRACES_EXPORTER")) {
      for (const std::string& name : split(v)) {
        if (name == "none") env_disabled_ = true;
        else if (name != "otlp") problem("OTEL_TRACES_EXPORTER", "'" + name + "' is not supported (otlp or none)");
      }
    }
    for (const char* var : {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"}) {
      if (const char* v = get(var); v && trim(v) != "http/json") {
        problem(var, "'" + std::string(v) + "': orch exports OTLP over HTTP with JSON encoding only (http/json)");
      }
    }
    if (const char* v = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
      c->endpoint = trim(v);
      endpoint_source_ = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    } else if (const char* base = get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
      std::string b = trim(base);
      c->endpoint = b + (!b.empty() && b.back() == '/' ? "v1/traces" : "/v1/traces");
      endpoint_source_ = "OTEL_EXPORTER_OTLP_ENDPOINT";
    }
    // Signal-specific headers win over the generic ones, key by key.
    for (const char* var : {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}) {
      const char* v = get(var);
      if (!v) continue;
      std::vector<std::pair<std::string, std::string>> pairs;
      std::string why;
      if (!parse_pairs(v, &pairs, &why)) {
        problem(var, why);  // the value itself is never repeated: it holds credentials
        continue;
      }
      for (auto& [k, val] : pairs) set_header(c, k, val, var);
    }
    for (const char* var : {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"}) {
      if (const char* v = get(var)) env_int(var, v, 1, 600000, &c->export_timeout_ms);
    }
    if (const char* v = get("OTEL_RESOURCE_ATTRIBUTES")) {
      std::vector<std::pair<std::string, std::string>> pairs;
      std::string why;
      if (!parse_pairs(v, &pairs, &why)) problem("OTEL_RESOURCE_ATTRIBUTES", why);
      for (auto& [k, val] : pairs) {
        if (k == "service.name") c->service_name = val;
        else c->resource_attributes.emplace_back(k, val);
      }
    }
    if (const char* v = get("OTEL_SERVICE_NAME"); v && *v) c->service_name = v;
    if (const char* v = get("OTEL_TRACES_SAMPLER")) set_sampler(c, trim(v), "OTEL_TRACES_SAMPLER");
    if (const char* v = get("OTEL_TRACES_SAMPLER_ARG")) set_ratio(c, trim(v), "OTEL_TRACES_SAMPLER_ARG");
    int64_t n = 0;
    if (const char* v = get("OTEL_BSP_MAX_QUEUE_SIZE"); v && env_int("OTEL_BSP_MAX_QUEUE_SIZE", v, 1, kMaxTraceQueueSpans, &n)) {
      c->max_queue_spans = static_cast<size_t>(n);
    }
    if (const char* v = get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
        v && env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", v, 1, kMaxTraceQueueSpans, &n)) {
      c->max_batch_spans = static_cast<size_t>(n);
    }
    if (const char* v = get("OTEL_BSP_SCHEDULE_DELAY")) env_int("OTEL_BSP_SCHEDULE_DELAY", v, 1, 3600000, &c->export_interval_ms);
    if (const char* v = get("OTEL_BSP_EXPORT_TIMEOUT")) env_int("OTEL_BSP_EXPORT_TIMEOUT", v, 1, 600000, &c->export_timeout_ms);
  }

  void read_file(const Value& section, TracingConfig* c) {
    if (section.is_null()) return;
    if (!section.is_object()) {
      problems_->push_back("config key 'tracing' must be an object");
      return;
    }
    for (const auto& [key, v] : section.as_object()) {
      const std::string k = "tracing." + key;
      if (key == "enabled") {
        if (!v.is_bool()) type_error(k, "true or false");
        else file_enabled_ = v.as_bool();
      } else if (key == "endpoint") {
        if (!v.is_string()) type_error(k, "a string (the collector's traces URL)");
        else c->endpoint = v.as_string(), endpoint_source_ = "config key 'tracing.endpoint'";
      } else if (key == "headers") {
        if (!v.is_object()) {
          type_error(k, "an object of header names to string values");
          continue;
        }
        for (const auto& [name, value] : v.as_object()) {
          if (!value.is_string()) type_error(k + "." + name, "a string");
          else set_header(c, name, value.as_string(), "config key '" + k + "'");
        }
      } else if (key == "service_name") {
        if (!v.is_string() || v.as_string().empty()) type_error(k, "a non-empty string");
        else c->service_name = v.as_string();
      } else if (key == "sampler") {
        if (!v.is_string()) type_error(k, "a string");
        else set_sampler(c, v.as_string(), "config key '" + k + "'");
      } else if (key == "sampler_arg") {
        if (!v.is_number()) type_error(k, "a number between 0 and 1");
        else set_ratio_value(c, v.get_double(-1), "config key '" + k + "'");
      } else if (key == "max_queue_spans" || key == "max_batch_spans") {
        if (!v.is_int() || v.as_int() < 1 || v.as_int() > static_cast<int64_t>(kMaxTraceQueueSpans)) {
          type_error(k, "an integer from 1 to " + std::to_string(kMaxTraceQueueSpans));
        } else {
          (key == "max_queue_spans" ? c->max_queue_spans : c->max_batch_spans) = static_cast<size_t>(v.as_int());
        }
      } else if (key == "export_interval_ms" || key == "export_timeout_ms") {
        const int64_t hi = key == "export_interval_ms" ? 3600000 : 600000;
        if (!v.is_int() || v.as_int() < 1 || v.as_int() > hi) type_error(k, "an integer from 1 to " + std::to_string(hi));
        else (key == "export_interval_ms" ? c->export_interval_ms : c->export_timeout_ms) = v.as_int();
      } else {
        problems_->push_back("unknown config key '" + k + "'");
      }
    }
  }

  void finish(TracingConfig* c) {
    c->enabled = !c->endpoint.empty() && !env_disabled_ && file_enabled_;
    if (file_enabled_ && !env_disabled_ && section_enabled_without_endpoint(c)) {
      problems_->push_back("config key 'tracing.enabled' is true but no endpoint is set (tracing.endpoint or "
                           "OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    if (!c->endpoint.empty()) {
      Result<Url> url = parse_http_url(c->endpoint);
      if (!url.ok()) problems_->push_back(endpoint_source_ + ": " + url.status().message());
    }
    if (c->max_batch_spans > c->max_queue_spans) {
      problems_->push_back("the export batch (" + std::to_string(c->max_batch_spans) +
                           " spans) must not be larger than the queue (" + std::to_string(c->max_queue_spans) + ")");
    }
  }

  bool explicit_enable = false;

 private:
  bool section_enabled_without_endpoint(const TracingConfig* c) const { return explicit_enable && c->endpoint.empty(); }

  const char* get(const char* name) const {
    const char* v = env_ ? env_(name) : nullptr;
    return v != nullptr && *v != '\0' ? v : nullptr;  // an empty variable counts as unset, as in the SDKs
  }

  static std::vector<std::string> split(const std::string& list) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i <= list.size()) {
      size_t j = list.find(',', i);
      if (j == std::string::npos) j = list.size();
      std::string item = lower(trim(list.substr(i, j - i)));
      if (!item.empty()) out.push_back(item);
      i = j + 1;
    }
    return out;
  }

  void problem(const std::string& source, const std::string& what) { problems_->push_back(source + ": " + what); }
  void type_error(const std::string& key, const std::string& want) {
    problems_->push_back("config key '" + key + "' must be " + want);
  }

  bool env_int(const char* var, const char* text, int64_t lo, int64_t hi, int64_t* out) {
    if (parse_int(trim(text), lo, hi, out)) return true;
    problem(var, "'" + std::string(text) + "' is not an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
    return false;
  }

  void set_header(TracingConfig* c, const std::string& name, const std::string& value, const std::string& source) {
    if (!is_token(name)) return problem(source, "header name '" + name + "' is not a valid HTTP header name");
    if (!safe_header_value(value)) {
      return problem(source, "the value of header '" + name + "' holds CR, LF or NUL, or is over " +
                                 std::to_string(kMaxTraceHeaderBytes) + " bytes");
    }
    for (auto& [n, v] : c->headers) {
      if (lower(n) == lower(name)) {
        v = value;
        return;
      }
    }
    if (c->headers.size() >= kMaxTraceHeaders) {
      return problem(source, "more than " + std::to_string(kMaxTraceHeaders) + " headers");
    }
    c->headers.emplace_back(name, value);
  }

  void set_sampler(TracingConfig* c, const std::string& name, const std::string& source) {
    for (const char* s : kSamplers) {
      if (name == s) {
        c->sampler = name;
        return;
      }
    }
    problem(source, "unknown sampler '" + name +
                        "' (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, "
                        "parentbased_traceidratio)");
  }

  void set_ratio(TracingConfig* c, const std::string& text, const std::string& source) {
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') return problem(source, "'" + text + "' is not a number between 0 and 1");
    set_ratio_value(c, v, source);
  }

  void set_ratio_value(TracingConfig* c, double v, const std::string& source) {
    if (!(v >= 0.0 && v <= 1.0)) return problem(source, "the sampling ratio must be between 0 and 1");  // NaN too
    c->sampler_ratio = v;
  }

  const EnvLookup& env_;
  std::vector<std::string>* problems_;
  bool env_disabled_ = false;
  bool file_enabled_ = true;
  std::string endpoint_source_;
};

}  // namespace

EnvLookup process_env() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

TracingConfig resolve_tracing_config(const Value& section, const EnvLookup& env, std::vector<std::string>* problems) {
  TracingConfig c;
  Resolver r(env, problems);
  r.read_env(&c);
  r.read_file(section, &c);
  r.explicit_enable = section.is_object() && section["enabled"].is_bool() && section["enabled"].as_bool();
  r.finish(&c);
  return c;
}

}  // namespace orch::server
