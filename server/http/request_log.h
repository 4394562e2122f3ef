// SPDX-License-Identifier: MIT
//
// One log line per HTTP request (method, path, route, status, duration,
// request id, remote address), and the response recorder tests use to check
// every JSON answer against docs/openapi.json.
//
// httplib handles a request on one thread from its headers to its logger
// callback, so what the line needs is noted in thread-local storage as the
// request goes: note_request_start() when its headers are read,
// note_route() when the router matched, request_finished() once the response
// is written (for every request, refused ones included).
#pragma once

#include <functional>
#include <string>

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace orch::server {

struct App;

// A response as the recorder sees it.
struct RecordedResponse {
  std::string method;
  std::string route;         // the route table's pattern ("/runs/{}"); empty when none matched
  std::string path;
  int status = 0;
  std::string content_type;
  std::string body;          // empty for streamed (SSE) bodies
  std::string request_body;  // what the client sent
};
using ResponseRecorder = std::function<void(const RecordedResponse&)>;

void note_request_start();
void note_route(const char* pattern);
void request_finished(App& app, const httplib::Request& req, const httplib::Response& res);

}  // namespace orch::server
