// SPDX-License-Identifier: MIT
//
// RequestGuard: what every request must pass before a route sees it, checked
// once its headers are read and before its body is (cpp-httplib's pre-routing
// step):
//   - header count and total size (431);
//   - message framing a proxy could read differently (400, 501; see
//     framing_problem);
//   - Content-Encoding other than identity, and multipart bodies (415): the
//     API takes plain JSON, and a 300 KB gzip body must not inflate to 300 MB;
//   - a declared Content-Length over the body limit (413, without reading it);
//   - DNS rebinding: without an API token, Host must be localhost, an IP
//     literal, the bound host or a configured one (403);
//   - cross-site requests: an Origin other than the server's own is refused
//     unless the config lists it (403); listed origins get CORS headers and
//     their preflight answered. curl and SDK clients send no Origin at all.
// It also says whether a write request (POST/PUT/PATCH/DELETE) comes with no
// body at all (neither Content-Length nor Transfer-Encoding, as `curl -X POST`
// sends it): HTTP/1.1 gives it an empty body (RFC 9112 §6.3), and the server
// routes it at once instead of waiting for a body that never comes.
//
// Thread-safety: immutable after construction; any thread may call it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace orch::server {

struct Refusal {
  int status;
  std::string code;
  std::string message;
};

class RequestGuard {
 public:
  explicit RequestGuard(const ServerConfig& config);

  // Why `req` must be refused, if it must.
  std::optional<Refusal> check(const httplib::Request& req) const;
  // Adds the CORS headers an allowed cross-origin request needs.
  void add_cors_headers(const httplib::Request& req, httplib::Response& res) const;
  // An allowed origin's CORS preflight (OPTIONS with Access-Control-Request-Method).
  bool is_preflight(const httplib::Request& req) const;

  static bool has_no_body(const httplib::Request& req);
  // Whether `req` declares a body (Content-Length or Transfer-Encoding): one
  // refused unread must not be taken for the next request.
  static bool body_framed(const httplib::Request& req);
  // Ambiguous framing (RFC 9112 §6.3, request smuggling): two Content-Length
  // headers, Transfer-Encoding with Content-Length (400), a transfer coding
  // other than chunked (501), a body on GET, HEAD or OPTIONS (400).
  static std::optional<Refusal> framing_problem(const httplib::Request& req);

 private:
  bool host_allowed(const std::string& host) const;
  bool origin_allowed(const httplib::Request& req, const std::string& origin) const;

  std::string bind_host_;
  bool token_set_;
  size_t max_header_count_;
  size_t max_header_bytes_;
  size_t max_body_bytes_;
  std::vector<std::string> allowed_origins_;
  std::vector<std::string> allowed_hosts_;
};

// Ends the connection `req` came on once `res` is written (Connection: close,
// its socket stops reading): used after refusing a body that was not read to
// its end, whose rest must not be taken for the next request.
void close_connection_after(const httplib::Request& req, httplib::Response& res);
// Called once each response is written (httplib's logger runs then): after
// close_connection_after, drops what arrived of the body and stops reading.
void cut_connection_if_asked(const httplib::Request& req);

}  // namespace orch::server
