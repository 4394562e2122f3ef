// SPDX-License-Identifier: MIT
#include "log/log.h"

#include <atomic>
#include <chrono>
#include <cstdint>
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

// JSON text with every byte from 0x7f up escaped (\uXXXX; a byte that is not
// UTF-8 becomes \ufffd), so that a line is plain ASCII: a header or id a
// client chose (DEL, C1 controls such as U+009B, which terminals take for an
// escape sequence, or bytes that are not UTF-8) reaches the log inert. Such
// bytes appear in JSON text only inside strings, where the escapes mean the
// same characters.
std::string ascii_json(const std::string& json) {
  static const char kHex[] = "0123456789abcdef";
  auto escape = [&](std::string* out, uint32_t unit) {
    out->append("\\u");
    for (int shift = 12; shift >= 0; shift -= 4) out->push_back(kHex[(unit >> shift) & 0xf]);
  };
  std::string out;
  out.reserve(json.size());
  for (size_t i = 0; i < json.size();) {
    const unsigned char c = static_cast<unsigned char>(json[i]);
    if (c < 0x7f) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // One UTF-8 sequence: its length, its first bits and the least code
    // point it may stand for (shorter forms are not UTF-8).
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    bool valid = len != 0 && i + len <= json.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const unsigned char cont = static_cast<unsigned char>(json[i + k]);
      valid = (cont & 0xc0) == 0x80;
      cp = (cp << 6) | (cont & 0x3f);
    }
    const uint32_t least = len == 3 ? 0x800 : len == 4 ? 0x10000 : 0x80;
    valid = valid && cp >= least && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    if (!valid) {
      escape(&out, c == 0x7f ? 0x7f : 0xfffd);
      ++i;
      continue;
    }
    if (cp >= 0x10000) {
      escape(&out, 0xd800 + ((cp - 0x10000) >> 10));
      escape(&out, 0xdc00 + ((cp - 0x10000) & 0x3ff));
    } else {
      escape(&out, cp);
    }
    i += len;
  }
  return out;
}

// A text value: bare when it is a plain word, else JSON-quoted, so a line
// always splits back into its fields (a message with spaces or a newline
// cannot forge another field or another line).
void append_text_value(std::string* out, const Value& v) {
  if (!v.is_string()) {
    *out += ascii_json(v.to_json());
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
  *out += plain ? s : ascii_json(v.to_json());
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
    return ascii_json(line.to_json());
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
