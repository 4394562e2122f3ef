// SPDX-License-Identifier: MIT
#include "http/http_api.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <string_view>

#include "orch/id.h"
#include "http/http_listener.h"
#include "http/request_guard.h"
#include "http/request_log.h"

namespace orch::server {
namespace {

// The segments of a path. A request's path is split as it came (its target,
// before '?') and each segment is percent-decoded once: "%2F" in an id stays
// inside its segment, and "%2541" is "%41", not "A".
std::vector<std::string> split_path(const std::string& path, bool decode) {
  std::vector<std::string> out;
  const size_t end = std::min(path.find('?'), path.size());
  size_t i = 0;
  while (i < end) {
    size_t j = std::min(path.find('/', i), end);
    if (j > i) out.push_back(decode ? httplib::detail::decode_url(path.substr(i, j - i), false) : path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool match(const std::vector<std::string>& pattern, const std::vector<std::string>& path, Params* params) {
  if (pattern.size() != path.size()) return false;
  params->clear();
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == "{}") {
      params->push_back(path[i]);
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  return true;
}

// Constant-time comparison so response timing does not leak the token.
bool same_token(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    diff |= static_cast<unsigned char>(static_cast<unsigned char>(i < a.size() ? a[i] : 0) ^
                                       static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

bool authorized(const App& app, const httplib::Request& req) {
  if (app.config.api_token.empty()) return true;
  if (req.path == "/health" || req.path == "/metrics") return true;
  std::string header = req.get_header_value("Authorization");
  constexpr size_t kPrefix = 7;  // "Bearer "
  if (header.size() <= kPrefix || strncasecmp(header.c_str(), "Bearer ", kPrefix) != 0) return false;
  std::string token = header.substr(kPrefix);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.pop_back();
  while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.erase(0, 1);
  return same_token(token, app.config.api_token);
}

// The client's X-Request-Id when it is one line of printable ASCII (httplib
// percent-decodes header values, so "%0D%0A" arrives as CR LF), else a fresh
// one: it is echoed in a response header and written to the log.
std::string request_id_for(const httplib::Request& req) {
  std::string id = req.get_header_value("X-Request-Id");
  bool printable = !id.empty() && id.size() <= kMaxIdBytes;
  for (unsigned char ch : id) printable = printable && ch >= 0x20 && ch < 0x7f;
  return printable ? id : new_uuid();
}

// httplib adds REMOTE_ADDR to a request's headers once its request line and
// headers are parsed: an error answered without it is one for a request it
// could not parse.
bool request_was_parsed(const httplib::Request& req) { return req.has_header("REMOTE_ADDR"); }

// Whether httplib 0.11 accepted the request line (Server::parse_request_line),
// judged from the fields it fills in before checking them: a known method, in
// capitals, HTTP/1.0 or 1.1, at most one '?' in the target. Then it was a
// header line that failed: one over its 8 KiB per line (HttpListener waits
// for the whole header block first; a closed connection gets no answer, and a
// read timing out mid-headers on a kept-alive connection is rare). Not seen:
// words after the version ("GET / HTTP/1.1 x" is taken for a header problem).
bool request_line_was_valid(const httplib::Request& req) {
  static const char* kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"};
  if (std::find_if(std::begin(kMethods), std::end(kMethods), [&](const char* m) { return req.method == m; }) ==
      std::end(kMethods)) {
    return false;
  }
  if (req.version != "HTTP/1.1" && req.version != "HTTP/1.0") return false;
  const std::string target = req.target.substr(0, req.target.find('#'));
  return !target.empty() && std::count(target.begin(), target.end(), '?') <= 1;
}

struct CompiledRoute {
  const char* text;  // the pattern as the table wrote it (for logs and the response recorder)
  std::string method;
  std::vector<std::string> pattern;
  Handler handler;
};

}  // namespace

void send_json(httplib::Response& res, int status, const Value& body) {
  res.status = status;
  res.set_content(body.to_json(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  send_json(res, status, Value::object({{"error", Value::object({{"code", code}, {"message", message}})}}));
}

void send_status(httplib::Response& res, const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument: return send_error(res, 400, "bad_request", s.message());
    case StatusCode::kNotFound: return send_error(res, 404, "not_found", s.message());
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted: return send_error(res, 409, "conflict", s.message());
    case StatusCode::kUnavailable: return send_error(res, 503, "unavailable", s.message());
    case StatusCode::kDeadlineExceeded: return send_error(res, 504, "timeout", s.message());
    case StatusCode::kResourceExhausted: return send_error(res, 429, "resource_exhausted", s.message());
    case StatusCode::kUnimplemented: return send_error(res, 501, "unimplemented", s.message());
    default: return send_error(res, 500, "internal", s.message());
  }
}

bool is_json_media_type(const std::string& content_type) {
  std::string type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  size_t start = type.find_first_not_of(" \t");
  type = start == std::string::npos ? "" : type.substr(start);
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (type == "application/json") return true;
  // Structured syntax suffix (RFC 6839): application/merge-patch+json and the like.
  constexpr std::string_view kPrefix = "application/", kSuffix = "+json";
  return type.size() > kPrefix.size() + kSuffix.size() && type.compare(0, kPrefix.size(), kPrefix) == 0 &&
         type.compare(type.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0 &&
         type.find('/', kPrefix.size()) == std::string::npos;
}

bool read_json_object(const httplib::Request& req, httplib::Response& res, Value* out, bool allow_empty) {
  if (req.body.empty() && allow_empty) {
    *out = Value::object();
    return true;
  }
  // A body of another media type is refused before it is parsed: an HTML form
  // or a text/plain fetch is a "simple" cross-site request a browser sends
  // without asking first, application/json is not (SPEC §12). Checked with or
  // without an API token, so a client behaves the same against any server.
  if (!req.body.empty() && !is_json_media_type(req.get_header_value("Content-Type"))) {
    const std::string given = req.get_header_value("Content-Type").substr(0, 100);
    send_error(res, 415, "unsupported_media_type",
               (given.empty() ? std::string("the request body has no Content-Type")
                              : "Content-Type '" + given + "' is not accepted") +
                   "; send the JSON body with Content-Type: application/json");
    return false;
  }
  auto v = parse_json(req.body);
  if (!v.ok()) {
    send_error(res, 400, "bad_request", "invalid JSON body: " + v.status().message());
    return false;
  }
  if (!v->is_object()) {
    send_error(res, 400, "bad_request", "body must be a JSON object");
    return false;
  }
  *out = std::move(v).value();
  return true;
}

ListenerLimits listener_limits(const ServerConfig& config) {
  ListenerLimits limits;
  limits.threads = std::max<size_t>(config.http_threads, 4);
  limits.max_connections_per_client = config.max_connections_per_client;
  limits.header_timeout_ms = config.header_timeout_ms;
  limits.max_header_bytes = config.max_header_bytes;
  return limits;
}

std::vector<Route> all_routes() {
  std::vector<Route> all;
  for (auto* table : {run_routes, workflow_routes, ops_routes, stream_routes, tracker_routes, worker_routes,
                      graph_routes, console_routes}) {
    for (Route& r : table()) all.push_back(std::move(r));
  }
  return all;
}

namespace {
const std::string kGet = "GET";
}  // namespace

void install_api(App& app, httplib::Server& svr) {
  auto routes = std::make_shared<std::vector<CompiledRoute>>();
  for (Route& r : all_routes()) routes->push_back({r.pattern, r.method, split_path(r.pattern, false), std::move(r.handler)});
  // Connections are accepted and given threads by HttpListener (its pool has
  // http.threads threads; SSE streams are capped below that).
  svr.set_tcp_nodelay(true);
  svr.set_payload_max_length(app.config.max_body_bytes);
  svr.set_keep_alive_max_count(1000);

  auto dispatch = [&app, routes](const httplib::Request& req, httplib::Response& res) {
    auto start = std::chrono::steady_clock::now();
    app.metrics.http_requests.fetch_add(1, std::memory_order_relaxed);
    res.set_header("X-Request-Id", request_id_for(req));
    std::vector<std::string> path = split_path(req.target.empty() ? req.path : req.target, !req.target.empty());
    Params params;
    const CompiledRoute* found = nullptr;
    std::string allow;
    // HEAD is answered as GET (RFC 9110 §9.3.2); httplib sends its headers
    // without the body.
    const std::string& method = req.method == "HEAD" ? kGet : req.method;
    for (const CompiledRoute& r : *routes) {
      if (!match(r.pattern, path, &params)) continue;
      if (r.method == method) {
        found = &r;
        break;
      }
      if (allow.find(r.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + r.method;
    }
    if (found != nullptr) note_route(found->text);
    if (!authorized(app, req) && !is_console_path(path)) {
      send_error(res, 401, "unauthorized", "missing or invalid bearer token");
    } else if (found != nullptr) {
      match(found->pattern, path, &params);
      std::string problem;
      for (const std::string& p : params) {
        if (problem.empty()) problem = id_problem(p, "id in the path");
      }
      if (problem.empty()) {
        found->handler(app, req, res, params);
      } else {
        send_error(res, 400, "bad_request", problem);
      }
    } else if (!allow.empty()) {
      res.set_header("Allow", allow);
      send_error(res, 405, "method_not_allowed", "method " + req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
    } else {
      send_error(res, 404, "not_found", "endpoint not found");
    }
    if (res.status >= 400) app.metrics.http_errors.fetch_add(1, std::memory_order_relaxed);
    app.metrics.http_latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  auto guard = std::make_shared<RequestGuard>(app.config);
  // Runs once a request's headers are read, before its body is.
  svr.set_pre_routing_handler([guard, dispatch](const httplib::Request& req, httplib::Response& res) {
    HttpListener::request_headers_read();
    note_request_start();
    if (auto refusal = guard->check(req)) {
      send_error(res, refusal->status, refusal->code, refusal->message);
      // The body (if any) was not read: it must not be taken for a request.
      if (RequestGuard::body_framed(req)) close_connection_after(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    guard->add_cors_headers(req, res);
    if (guard->is_preflight(req)) {
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    if (RequestGuard::has_no_body(req)) {  // an empty body: nothing to wait for
      dispatch(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Bodies are read here, up to the limit however they are framed: the
  // Content-Length was checked above, a chunked body stops at the limit.
  const size_t max_body = app.config.max_body_bytes;
  const auto body_timeout = std::chrono::milliseconds(app.config.body_timeout_ms);
  auto with_body = [dispatch, max_body, body_timeout](const httplib::Request& req, httplib::Response& res,
                                                      const httplib::ContentReader& reader) {
    std::string body;
    bool too_large = false, too_slow = false;
    // Each read waits 5 s at most, but a body trickled a byte at a time
    // would never end: the whole body has a deadline.
    const auto deadline = std::chrono::steady_clock::now() + body_timeout;
    bool complete = reader([&](const char* data, size_t n) {
      if (body.size() + n > max_body) {
        too_large = true;
        return false;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        too_slow = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (!complete) {
      if (too_large) {
        send_error(res, 413, "payload_too_large",
                   "request body exceeds the size limit of " + std::to_string(max_body) + " bytes (http.max_body_bytes)");
      } else if (too_slow) {
        send_error(res, 408, "request_timeout",
                   "the request body did not arrive within " + std::to_string(body_timeout.count()) +
                       " ms (http.body_timeout_ms)");
      } else {
        send_error(res, 400, "bad_request", "the request body could not be read (malformed chunked encoding?)");
      }
      close_connection_after(req, res);
      return;
    }
    // The handlers read req.body, as for any request httplib reads itself.
    const_cast<httplib::Request&>(req).body = std::move(body);
    dispatch(req, res);
  };
  // Runs after each response is written: a connection whose request body was
  // refused unread ends here.
  svr.set_logger([&app](const httplib::Request& req, const httplib::Response& res) {
    request_finished(app, req, res);
    cut_connection_if_asked(req);
    HttpListener::response_written();
  });
  // [\s\S], not ".": a path whose id decodes to a newline still reaches the
  // router (and gets its 400).
  for (const char* pattern : {R"(/[\s\S]*)", "/"}) {
    svr.Get(pattern, dispatch);
    svr.Post(pattern, with_body);
    svr.Put(pattern, with_body);
    svr.Delete(pattern, with_body);
    svr.Patch(pattern, with_body);
    svr.Options(pattern, dispatch);
  }
  // Errors httplib produces itself (413, 414, 400 for a request it could not
  // parse, ...) still get the JSON envelope.
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(res, 413, "payload_too_large", "request body exceeds the size limit");
    } else if (res.status == 414) {
      send_error(res, 414, "uri_too_long",
                 "the request line is longer than 8192 bytes (the HTTP parser's limit); send long data in a JSON body");
    } else if (res.status == 400 && !request_was_parsed(req)) {
      // What is left of the request on the connection is not a request.
      close_connection_after(req, res);
      if (request_line_was_valid(req)) {
        send_error(res, 431, "headers_too_large",
                   "a request header line is longer than 8192 bytes (the HTTP parser's limit per line; "
                   "all headers together: http.max_header_bytes)");
      } else {
        send_error(res, 400, "bad_request",
                   "malformed HTTP request: the request line must be 'METHOD /path HTTP/1.1', the method in capitals");
      }
    } else if (res.status == 400) {
      send_error(res, 400, "bad_request", "malformed HTTP request (method " + req.method.substr(0, 32) + ")");
    } else if (res.status == 416) {
      send_error(res, 416, "range_not_satisfiable", "the Range header could not be parsed");
    } else {
      send_error(res, res.status, res.status >= 500 ? "internal" : "bad_request",
                 "the request could not be processed (HTTP " + std::to_string(res.status) + ")");
    }
  });
  // Never leak exception text in a header (httplib's default); answer JSON.
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal", what);
  });
}

}  // namespace orch::server
