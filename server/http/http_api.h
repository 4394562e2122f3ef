// SPDX-License-Identifier: MIT
//
// The HTTP API (NullBoiler-compatible routes, SPEC.md §8–§9) on cpp-httplib.
// One catch-all handler per method feeds a small router, so a known path with
// a wrong method gets 405 (with Allow) and an unknown path 404, both with the
// JSON error envelope {"error":{"code","message"}}.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "app.h"
#include "id_rules.h"  // id_problem, kMaxIdBytes: the handlers check ids with them
#include "http/http_listener.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace orch::server {

using Params = std::vector<std::string>;  // decoded {placeholders} of the matched path
using Handler = std::function<void(App&, const httplib::Request&, httplib::Response&, const Params&)>;

struct Route {
  const char* method;
  const char* pattern;  // e.g. "/runs/{}/cancel"
  Handler handler;
};

// Route tables, one per area.
std::vector<Route> run_routes();
std::vector<Route> workflow_routes();
std::vector<Route> ops_routes();
std::vector<Route> stream_routes();
std::vector<Route> tracker_routes();
std::vector<Route> worker_routes();
std::vector<Route> graph_routes();
std::vector<Route> console_routes();
// Every route orch serves: the tables above, in order.
std::vector<Route> all_routes();
// The console's files (/ui, /ui/...), which need no bearer token.
bool is_console_path(const std::vector<std::string>& segments);

// Installs every route, limits, auth, error and exception handlers on `svr`.
void install_api(App& app, httplib::Server& svr);

// The listener limits `config` asks for (see http_listener.h).
ListenerLimits listener_limits(const ServerConfig& config);


// Response helpers shared by the handlers.
void send_json(httplib::Response& res, int status, const Value& body);
void send_error(httplib::Response& res, int status, const std::string& code, const std::string& message);
// The HTTP status and envelope code for a Status.
void send_status(httplib::Response& res, const Status& status);

// Whether a Content-Type names JSON: application/json or application/<x>+json,
// any case, parameters (`; charset=utf-8`) ignored.
bool is_json_media_type(const std::string& content_type);
// Parses a JSON object body. On failure answers 400 (415 for a non-empty body
// whose Content-Type is missing or not JSON) and returns false. An empty body
// is {} when `allow_empty`.
bool read_json_object(const httplib::Request& req, httplib::Response& res, Value* out, bool allow_empty = false);

}  // namespace orch::server
