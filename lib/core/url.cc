// SPDX-License-Identifier: MIT
// The one URL parser of orch (see orch/url.h). Everything that opens a
// connection (HTTP workers, callbacks, the tracker, brokers) goes through it,
// so no malformed URL reaches httplib (whose Client constructor throws on a
// port it cannot convert) or libmosquitto/hiredis.
#include "orch/url.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>

namespace orch {
namespace {

struct Scheme {
  const char* name;
  int default_port;
};
constexpr Scheme kSchemes[] = {{"http", 80}, {"https", 443}, {"mqtt", 1883}, {"redis", 6379}};

constexpr size_t kMaxHostBytes = 253;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Status bad(const std::string& why, std::string_view text) {
  // The URL is quoted only when it is printable and short: it may be hostile.
  return Status::invalid_argument("url " + why + (text.size() <= 256 ? ": " + std::string(text) : std::string()));
}

bool is_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

// "2130706433", "127.1" or "0x7f.0.0.1": inet_aton reads them as IPv4
// addresses (so would the resolver), but they are not dotted quads.
bool is_odd_ipv4_spelling(const std::string& host) {
  in_addr a{};
  in_addr b{};
  return inet_aton(host.c_str(), &a) != 0 && inet_pton(AF_INET, host.c_str(), &b) != 1;
}

Result<int> parse_port(std::string_view digits, std::string_view text) {
  if (digits.empty() || digits.size() > 5) return bad("port must be 1-65535", text);
  int port = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad("port must be 1-65535", text);
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return bad("port must be 1-65535", text);
  return port;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port" into `url`.
Status parse_authority(std::string_view authority, std::string_view text, Url* url) {
  if (authority.find('@') != std::string_view::npos) return bad("must not carry user info (user@host)", text);
  std::string_view host = authority;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("has an unclosed IPv6 bracket", text);
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("has characters after the IPv6 address", text);
      port = after.substr(1);
      has_port = true;
    }
    in6_addr a{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a) != 1) return bad("has a bad IPv6 address", text);
  } else {
    size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':', colon + 1) != std::string_view::npos) {
        return bad("has an IPv6 address without brackets", text);
      }
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (host.size() > kMaxHostBytes) return bad("host is longer than 253 bytes", text);
    for (char c : host) {
      if (!is_host_char(c)) return bad("host may hold only letters, digits, '.', '-' and '_'", text);
    }
  }
  if (host.empty()) return bad("has no host", text);
  url->host = lower(host);
  if (is_odd_ipv4_spelling(url->host)) return bad("host must write an IPv4 address as a dotted quad", text);
  if (has_port) {
    ORCH_ASSIGN_OR_RETURN(url->port, parse_port(port, text));
  }
  return Status();
}

}  // namespace

std::string Url::authority() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string Url::origin() const { return scheme + "://" + authority(); }

Result<Url> parse_url(std::string_view text) {
  if (text.size() > kMaxUrlBytes) return bad("is longer than " + std::to_string(kMaxUrlBytes) + " bytes", {});
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return bad("must not contain whitespace or control characters", {});
  }
  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return bad("must start with scheme:// (http, https, mqtt or redis)", text);
  Url url;
  url.scheme = lower(text.substr(0, scheme_end));
  for (const Scheme& s : kSchemes) {
    if (url.scheme == s.name) url.port = s.default_port;
  }
  if (url.port == 0) return bad("scheme must be http, https, mqtt or redis", text);
  const size_t host_begin = scheme_end + 3;
  size_t host_end = text.find_first_of("/?#", host_begin);
  if (host_end == std::string_view::npos) host_end = text.size();
  ORCH_RETURN_IF_ERROR(parse_authority(text.substr(host_begin, host_end - host_begin), text, &url));
  std::string_view rest = text.substr(host_end);
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) {
    url.has_fragment = true;
    rest = rest.substr(0, hash);
  }
  url.target = rest.empty() ? "/" : (rest.front() == '?' ? "/" + std::string(rest) : std::string(rest));
  return url;
}

Result<Url> parse_http_url(std::string_view text) {
  ORCH_ASSIGN_OR_RETURN(Url url, parse_url(text));
  if (url.scheme != "http" && url.scheme != "https") return bad("scheme must be http or https", text);
  return url;
}

}  // namespace orch
