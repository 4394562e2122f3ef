// SPDX-License-Identifier: MIT
#include "log/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace orch::server {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
std::mutex g_sink_mu;
std::function<void(const std::string&)> g_sink;  // guarded by g_sink_mu

std::string iso8601(int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the format could print (-Wformat-truncation)
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  return buf;
}

// A text value: bare when it is a plain word, else JSON-quoted, so a line
// always splits back into its fields (a message with spaces or a newline
// cannot forge another field or another line).
void append_text_value(std::string* out, const Value& v) {
  if (!v.is_string()) {
    *out += v.to_json();
    return;
  }
  const std::string& s = v.as_string();
  bool plain = !s.empty();
  for (unsigned char ch : s) {
    if (ch <= 0x20 || ch == '"' || ch == '=' || ch == '\\' || ch >= 0x7f) {
      plain = false;
      break;
    }
  }
  *out += plain ? s : v.to_json();
}

}  // namespace

std::optional<LogLevel> log_level_from_name(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return std::nullopt;
}

std::optional<LogFormat> log_format_from_name(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return std::nullopt;
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

void configure_log(LogLevel level, LogFormat format) {
  g_level = static_cast<int>(level);
  g_format = static_cast<int>(format);
}

void set_log_sink(std::function<void(const std::string& line)> sink) {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  g_sink = std::move(sink);
}

bool log_enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

std::string format_log_line(LogFormat format, int64_t unix_ms, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields) {
  if (format == LogFormat::kJson) {
    Value line = Value::object({{"ts", iso8601(unix_ms)}, {"level", log_level_name(level)}, {"msg", std::string(msg)}});
    for (const auto& [key, value] : fields) {
      // The entry's own keys are never overwritten by a field.
      if (!value.is_null() && line.find(key) == nullptr) line.set(key, value);
    }
    return line.to_json();
  }
  std::string out = iso8601(unix_ms);
  out += ' ';
  out += log_level_name(level);
  out += ' ';
  append_text_value(&out, Value(std::string(msg)));
  for (const auto& [key, value] : fields) {
    if (value.is_null()) continue;  // a detail this entry does not have
    out += ' ';
    out += key;
    out += '=';
    append_text_value(&out, value);
  }
  return out;
}

void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!log_enabled(level)) return;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  std::string line = format_log_line(static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)), now, level,
                                     msg, fields);
  std::lock_guard<std::mutex> lock(g_sink_mu);
  if (g_sink) {
    g_sink(line);
    return;
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace orch::server
