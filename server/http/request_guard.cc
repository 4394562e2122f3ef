// SPDX-License-Identifier: MIT
#include "http/request_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>

#include "http/http_listener.h"

namespace orch::server {
namespace {

// httplib adds these to every request's headers; they are not the client's.
constexpr const char* kAddedHeaders[] = {"REMOTE_ADDR", "REMOTE_PORT", "LOCAL_ADDR", "LOCAL_PORT"};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "name:port", "[v6]:port" or "name" -> the host part, lower-cased.
std::string host_part(const std::string& authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    return lower(authority.substr(0, close == std::string::npos ? authority.size() : close + 1));
  }
  size_t colon = authority.rfind(':');
  return lower(colon == std::string::npos ? authority : authority.substr(0, colon));
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) return true;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  }
  return false;
}

bool is_write_method(const std::string& m) {
  return m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE";
}

}  // namespace

RequestGuard::RequestGuard(const ServerConfig& config)
    : bind_host_(lower(config.host)),
      token_set_(!config.api_token.empty()),
      max_header_count_(config.max_header_count),
      max_header_bytes_(config.max_header_bytes),
      max_body_bytes_(config.max_body_bytes) {
  for (const std::string& o : config.allowed_origins) allowed_origins_.push_back(lower(o));
  for (const std::string& h : config.allowed_hosts) allowed_hosts_.push_back(lower(h));
}

bool RequestGuard::has_no_body(const httplib::Request& req) {
  return is_write_method(req.method) && !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding");
}

bool RequestGuard::host_allowed(const std::string& host) const {
  if (host == "localhost" || (host.size() > 10 && host.compare(host.size() - 10, 10, ".localhost") == 0)) return true;
  if (is_ip_literal(host) || host == bind_host_) return true;
  return std::find(allowed_hosts_.begin(), allowed_hosts_.end(), host) != allowed_hosts_.end();
}

bool RequestGuard::origin_allowed(const httplib::Request& req, const std::string& origin) const {
  std::string o = lower(origin);
  // Same origin: the page was served by this server under the name the
  // request is addressed to.
  size_t scheme_end = o.find("://");
  if (scheme_end != std::string::npos && o.compare(scheme_end + 3, std::string::npos, lower(req.get_header_value("Host"))) == 0 &&
      !req.get_header_value("Host").empty()) {
    return true;
  }
  for (const std::string& allowed : allowed_origins_) {
    if (allowed == "*" || allowed == o) return true;
  }
  return false;
}

std::optional<Refusal> RequestGuard::framing_problem(const httplib::Request& req) {
  // Where a body ends must be read the same way by every hop (RFC 9112 §6.3):
  // a proxy in front that took the other of two lengths would forward the
  // rest of this body as a request of its own (request smuggling).
  // RFC 9112 §3.2: an HTTP/1.1 request names its host, once (a proxy and this
  // server must not read two different ones; 1.0 clients may send none).
  const size_t hosts = req.get_header_value_count("Host");
  if (hosts > 1) {
    return Refusal{400, "bad_request", "the request has " + std::to_string(hosts) + " Host headers; send one"};
  }
  if (hosts == 0 && req.version == "HTTP/1.1") {
    return Refusal{400, "bad_request", "an HTTP/1.1 request must have a Host header"};
  }
  const size_t lengths = req.get_header_value_count("Content-Length");
  if (lengths > 1) {
    return Refusal{400, "bad_request", "the request has " + std::to_string(lengths) +
                                           " Content-Length headers; send one"};
  }
  if (req.has_header("Transfer-Encoding")) {
    if (lengths > 0) {
      return Refusal{400, "bad_request", "the request has both Transfer-Encoding and Content-Length; send one"};
    }
    std::string coding = lower(req.get_header_value("Transfer-Encoding"));
    while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) coding.pop_back();
    if (req.get_header_value_count("Transfer-Encoding") > 1 || coding != "chunked") {
      // RFC 9112 §6.1: a transfer coding the server does not know is 501.
      return Refusal{501, "unimplemented", "Transfer-Encoding '" + coding.substr(0, 100) +
                                               "' is not supported; send the body with Content-Length or chunked"};
    }
  }
  if (!is_write_method(req.method)) {
    // httplib reads no body for GET, HEAD or OPTIONS: one declared here would
    // be read as the next request on the connection.
    const bool body = req.has_header("Transfer-Encoding") ||
                      (lengths == 1 && req.get_header_value("Content-Length").find_first_not_of('0') != std::string::npos);
    if (body) return Refusal{400, "bad_request", "a " + req.method + " request must not have a body"};
  }
  return std::nullopt;
}

bool RequestGuard::body_framed(const httplib::Request& req) {
  return req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
}

std::optional<Refusal> RequestGuard::check(const httplib::Request& req) const {
  size_t count = 0, bytes = 0;
  for (const auto& [name, value] : req.headers) {
    if (std::find(std::begin(kAddedHeaders), std::end(kAddedHeaders), name) != std::end(kAddedHeaders)) continue;
    ++count;
    bytes += name.size() + value.size() + 4;
  }
  if (count > max_header_count_ || bytes > max_header_bytes_) {
    return Refusal{431, "headers_too_large",
                   "request has " + std::to_string(count) + " headers (" + std::to_string(bytes) +
                       " bytes); the limit is " + std::to_string(max_header_count_) + " headers and " +
                       std::to_string(max_header_bytes_) + " bytes (http.max_header_count, http.max_header_bytes)"};
  }
  if (auto refusal = framing_problem(req)) return refusal;
  if (!token_set_) {
    std::string host = req.get_header_value("Host");
    if (!host.empty() && !host_allowed(host_part(host))) {
      return Refusal{403, "forbidden",
                     "Host '" + host + "' is not this server's address; without an API token only localhost, "
                     "IP addresses, the bound host and http.allowed_hosts are served (DNS rebinding)"};
    }
  }
  if (req.has_header("Origin")) {
    std::string origin = req.get_header_value("Origin");
    if (!origin_allowed(req, origin)) {
      return Refusal{403, "forbidden",
                     "cross-origin request from '" + origin + "' refused; allow it with http.allowed_origins"};
    }
  } else if (lower(req.get_header_value("Sec-Fetch-Site")) == "cross-site") {
    // A browser that sent no Origin still says where the request comes from.
    return Refusal{403, "forbidden", "cross-site request refused (Sec-Fetch-Site: cross-site)"};
  }
  std::string encoding = lower(req.get_header_value("Content-Encoding"));
  if (!encoding.empty() && encoding != "identity") {
    return Refusal{415, "unsupported_media_type",
                   "Content-Encoding '" + encoding + "' is not accepted; send the body uncompressed"};
  }
  if (lower(req.get_header_value("Content-Type")).rfind("multipart/", 0) == 0) {
    return Refusal{415, "unsupported_media_type", "multipart bodies are not accepted; send JSON"};
  }
  if (req.has_header("Content-Length")) {
    const std::string& text = req.get_header_value("Content-Length");
    char* end = nullptr;
    unsigned long long declared = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || !std::isdigit(static_cast<unsigned char>(text[0]))) {
      return Refusal{400, "bad_request", "invalid Content-Length '" + text + "'"};
    }
    if (declared > max_body_bytes_) {
      return Refusal{413, "payload_too_large", "request body of " + text + " bytes exceeds the size limit of " +
                                                   std::to_string(max_body_bytes_) + " bytes (http.max_body_bytes)"};
    }
  }
  return std::nullopt;
}

bool RequestGuard::is_preflight(const httplib::Request& req) const {
  return req.method == "OPTIONS" && req.has_header("Origin") && req.has_header("Access-Control-Request-Method");
}

void RequestGuard::add_cors_headers(const httplib::Request& req, httplib::Response& res) const {
  if (!req.has_header("Origin") || allowed_origins_.empty()) return;
  res.set_header("Access-Control-Allow-Origin", req.get_header_value("Origin"));
  res.set_header("Vary", "Origin");
  res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
  res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-Request-Id");
  res.set_header("Access-Control-Max-Age", "600");
}

namespace {
// Set by close_connection_after, read by cut_connection_if_asked: httplib
// runs a request's handlers, writes its response and calls its logger on one
// thread.
thread_local bool t_cut_asked = false;
}  // namespace

void close_connection_after(const httplib::Request&, httplib::Response& res) {
  res.set_header("Connection", "close");
  t_cut_asked = true;
}

namespace {

// What of the body has arrived is read and dropped (up to 1 MiB): closing a
// socket with unread data sends a reset, which would make the client lose the
// response too. Then the response is still written; the next read sees the
// end and the connection closes instead of parsing the body's rest as a
// request.
void drain_and_stop_reading(int fd) {
  char sink[16384];
  size_t drained = 0;
  while (drained < (1u << 20)) {
    ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_RD);
}

}  // namespace

void cut_connection_if_asked(const httplib::Request& req) {
  if (!t_cut_asked) return;
  t_cut_asked = false;
  // A connection HttpListener serves is known by its thread; a request it
  // could not parse has no addresses to find it by.
  if (int fd = HttpListener::current_connection_fd(); fd >= 0) return drain_and_stop_reading(fd);
  // httplib 0.11 offers no handle on a request's socket: find it by its
  // addresses (rare: only a refused body that was not read to its end).
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* entry = readdir(dir)) {
    int fd = std::atoi(entry->d_name);
    if (fd <= 2 || fd == dirfd(dir)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    auto port_of = [](const sockaddr_storage& a) {
      if (a.ss_family == AF_INET) return static_cast<int>(ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port));
      if (a.ss_family == AF_INET6) return static_cast<int>(ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port));
      return -1;
    };
    char ip[INET6_ADDRSTRLEN] = {0};
    if (peer.ss_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in&>(peer).sin_addr, ip, sizeof(ip));
    } else if (peer.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6&>(peer).sin6_addr, ip, sizeof(ip));
    }
    if (port_of(local) == req.local_port && port_of(peer) == req.remote_port && req.remote_addr == ip) {
      drain_and_stop_reading(fd);
      break;
    }
  }
  closedir(dir);
}

}  // namespace orch::server
