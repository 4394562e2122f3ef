// SPDX-License-Identifier: MIT
#include "http/request_log.h"

#include <httplib.h>

#include <chrono>

#include "app.h"
#include "log/log.h"

namespace orch::server {
namespace {

struct RequestNotes {
  bool started = false;
  std::chrono::steady_clock::time_point start;
  const char* route = nullptr;  // a route table's pattern: static storage
};
thread_local RequestNotes t_notes;

}  // namespace

void note_request_start() {
  t_notes.started = true;
  t_notes.start = std::chrono::steady_clock::now();
  t_notes.route = nullptr;
}

void note_route(const char* pattern) { t_notes.route = pattern; }

void request_finished(App& app, const httplib::Request& req, const httplib::Response& res) {
  RequestNotes notes = t_notes;
  t_notes = RequestNotes();
  const double ms = notes.started
                        ? std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - notes.start).count()
                        : 0.0;
  const LogLevel level = res.status >= 500 ? LogLevel::kError : LogLevel::kInfo;
  if (log_enabled(level)) {
    // The path, never the query string or a header: tokens travel there.
    log(level, "http.request",
        {{"method", req.method},
         {"path", req.path},
         {"route", notes.route != nullptr ? Value(notes.route) : Value()},
         {"status", res.status},
         {"duration_ms", static_cast<double>(static_cast<int64_t>(ms * 1000)) / 1000},
         {"request_id", res.get_header_value("X-Request-Id")},
         {"remote", req.remote_addr}});
  }
  if (app.response_recorder) {
    RecordedResponse r;
    r.method = req.method;
    r.route = notes.route != nullptr ? notes.route : "";
    r.path = req.path;
    r.status = res.status;
    r.content_type = res.get_header_value("Content-Type");
    r.body = res.body;
    r.request_body = req.body;
    app.response_recorder(r);
  }
}

}  // namespace orch::server
