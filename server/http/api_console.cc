// SPDX-License-Identifier: MIT
// The web console at /ui/: the files of server/console, compiled in
// (console_files.h). They are public (no bearer token: the page asks for the
// token and sends it on its API calls); everything they show comes through
// the public API. Every answer carries a Content-Security-Policy that allows
// only the console's own scripts, styles and API, so data shown by the page
// can never run as script even if a bug inserted it as markup.
#include <httplib.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "http/console_files.h"
#include "http/http_api.h"

namespace orch::server {
namespace {

constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const char* content_type_of(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  if (ends_with(".svg")) return "image/svg+xml";
  if (ends_with(".json")) return "application/json";
  return "application/octet-stream";
}

// A strong validator per file: the files change only with the program.
std::string etag_of(std::string_view bytes) {
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : bytes) hash = (hash ^ c) * 1099511628211ULL;
  char text[24];
  std::snprintf(text, sizeof(text), "\"%016llx\"", static_cast<unsigned long long>(hash));
  return text;
}

struct ServedFile {
  std::string_view bytes;
  const char* content_type;
  std::string etag;
};

const std::unordered_map<std::string, ServedFile>& served_files() {
  static const auto files = [] {
    std::unordered_map<std::string, ServedFile> map;
    for (const ConsoleFile& f : console_files()) {
      map[std::string(f.name)] = {f.bytes, content_type_of(f.name), etag_of(f.bytes)};
    }
    return map;
  }();
  return files;
}

void serve_file(const std::string& name, const httplib::Request& req, httplib::Response& res) {
  const auto& files = served_files();
  auto it = files.find(name);
  if (it == files.end()) return send_error(res, 404, "not_found", "no console file " + name);
  const ServedFile& file = it->second;
  res.set_header("Content-Security-Policy", kContentSecurityPolicy);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("X-Frame-Options", "DENY");
  // Revalidated on every load (cheap: 304 while the program is the same),
  // so a new orch never runs with an old console from the cache.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("ETag", file.etag);
  if (req.get_header_value("If-None-Match") == file.etag) {
    res.status = 304;
    return;
  }
  res.status = 200;
  res.set_content(std::string(file.bytes), file.content_type);
}

void console_index(App&, const httplib::Request& req, httplib::Response& res, const Params&) {
  // "/ui" and "/ui/" are one route (empty segments are skipped); the page's
  // relative URLs need the slash.
  if (req.path.empty() || req.path.back() != '/') {
    res.status = 308;
    res.set_header("Location", "/ui/");
    return;
  }
  serve_file("index.html", req, res);
}

void console_file(App&, const httplib::Request& req, httplib::Response& res, const Params& p) {
  serve_file(p[0], req, res);
}

}  // namespace

bool is_console_path(const std::vector<std::string>& segments) { return !segments.empty() && segments[0] == "ui"; }

std::vector<Route> console_routes() {
  return {
      {"GET", "/ui", console_index},
      {"GET", "/ui/{}", console_file},
  };
}

}  // namespace orch::server
