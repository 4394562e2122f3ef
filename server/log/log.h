// SPDX-License-Identifier: MIT
//
// The server's log: one line per entry on stderr, as text
// (`2026-01-02T03:04:05.678Z info http.request method=GET status=200`) or as
// JSON (`{"ts":"...","level":"info","msg":"http.request","method":"GET",...}`),
// chosen by --log-format; entries below --log-level are dropped.
//
// A line is plain ASCII: DEL and non-ASCII characters are \uXXXX escapes in
// both formats (bytes that are not UTF-8: \ufffd).
//
// What is logged is chosen where it is logged, field by field: no entry
// carries a request's headers or body, a config file, a worker's token or a
// callback's HMAC secret (tests/server_log_test.cc greps a run that used them
// all).
//
// Thread-safety: every function may be called from any thread; a line is
// written whole (one write under a mutex).
#pragma once

#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "orch/value.h"

namespace orch::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kText, kJson };

std::optional<LogLevel> log_level_from_name(std::string_view name);  // debug, info, warn, error
std::optional<LogFormat> log_format_from_name(std::string_view name);  // text, json
const char* log_level_name(LogLevel level);

using LogField = std::pair<const char*, Value>;

// Sets the process's level and format (default: info, text).
void configure_log(LogLevel level, LogFormat format);
// Where lines go (default: stderr). Tests capture them; null restores stderr.
// Each call receives one line without its newline.
void set_log_sink(std::function<void(const std::string& line)> sink);

bool log_enabled(LogLevel level);
// Writes one entry: `msg` names what happened (dotted, e.g. "run.completed"),
// `fields` are its details in order (null ones are left out).
void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

// Formats an entry without writing it (exposed for tests).
std::string format_log_line(LogFormat format, int64_t unix_ms, LogLevel level, std::string_view msg,
                            std::initializer_list<LogField> fields);

}  // namespace orch::server
