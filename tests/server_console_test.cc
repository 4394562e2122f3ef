// SPDX-License-Identifier: MIT
// The web console's files at /ui/ (content types, caching, security headers,
// no token needed) and the graph pictures (GET /workflows/{id}/graph.svg,
// GET /runs/{id}/graph.svg), over real loopback HTTP.
#include <chrono>
#include <thread>

#include "catch.h"
#include "support/server_fixture.h"
#if ORCH_HAS_GRAPHVIZ
#include "orch/graphviz.h"
#endif

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::TestServer;

namespace {

orch::server::ServerConfig with_token() {
  orch::server::ServerConfig config;
  config.api_token = "secret-token";
  return config;
}

httplib::Headers bearer() { return {{"Authorization", "Bearer secret-token"}}; }

const char* kPausing = R"({"id": "pausing",
  "nodes": {"a": {"type": "transform", "updates": {"x": 1}},
            "ask": {"type": "interrupt", "message": "ok?"},
            "b": {"type": "transform", "updates": {"x": 2}}},
  "edges": [["__start__", "a"], ["a", "ask"], ["ask", "b"], ["b", "__end__"]]})";

std::string big_workflow(int nodes) {
  std::string json = R"({"id": "big", "nodes": {)";
  for (int i = 0; i < nodes; ++i) json += (i ? "," : "") + std::string("\"n") + std::to_string(i) + "\": {\"type\": \"transform\", \"updates\": {}}";
  json += R"(}, "edges": [["__start__", "n0"])";
  for (int i = 1; i < nodes; ++i) json += ",[\"n" + std::to_string(i - 1) + "\",\"n" + std::to_string(i) + "\"]";
  return json + "]}";
}

}  // namespace

TEST_CASE("the console is served at /ui/ without a token and with a strict CSP", "[server][console]") {
  TestServer server(with_token());
  auto c = server.client();

  auto redirect = c->Get("/ui");
  REQUIRE(redirect);
  CHECK(redirect->status == 308);
  CHECK(redirect->get_header_value("Location") == "/ui/");

  auto index = c->Get("/ui/");
  REQUIRE(index);
  REQUIRE(index->status == 200);
  CHECK(index->get_header_value("Content-Type") == "text/html; charset=utf-8");
  CHECK(index->body.find("<script type=\"module\" src=\"app.js\">") != std::string::npos);
  const std::string csp = index->get_header_value("Content-Security-Policy");
  CHECK(csp.find("script-src 'self'") != std::string::npos);
  CHECK(csp.find("default-src 'none'") != std::string::npos);
  CHECK(csp.find("unsafe-inline") == std::string::npos);
  CHECK(index->get_header_value("X-Content-Type-Options") == "nosniff");
  CHECK(index->get_header_value("Cache-Control") == "no-cache");

  auto js = c->Get("/ui/app.js");
  REQUIRE(js);
  CHECK(js->status == 200);
  CHECK(js->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
  auto css = c->Get("/ui/style.css");
  REQUIRE(css);
  CHECK(css->get_header_value("Content-Type") == "text/css; charset=utf-8");

  // Revalidation: the same ETag gets 304 and no body.
  const std::string etag = js->get_header_value("ETag");
  REQUIRE_FALSE(etag.empty());
  auto again = c->Get("/ui/app.js", {{"If-None-Match", etag}});
  REQUIRE(again);
  CHECK(again->status == 304);
  CHECK(again->body.empty());

  auto missing = c->Get("/ui/nope.js");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  // The API itself still wants the token, also via paths that start like /ui.
  auto api = c->Get("/runs");
  REQUIRE(api);
  CHECK(api->status == 401);
  auto sneaky = c->Get("/ui/..%2Fruns");
  REQUIRE(sneaky);
  CHECK(sneaky->status == 404);
}

TEST_CASE("graph pictures of workflows and runs", "[server][console]") {
  TestServer server(with_token());
  auto c = server.client();
  auto created = c->Post("/workflows", bearer(), kPausing, "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 201);

  auto unauthorized = c->Get("/workflows/pausing/graph.svg");
  REQUIRE(unauthorized);
  CHECK(unauthorized->status == 401);

  auto svg = c->Get("/workflows/pausing/graph.svg", bearer());
  REQUIRE(svg);
#if ORCH_HAS_GRAPHVIZ
  REQUIRE(svg->status == 200);
  CHECK(svg->get_header_value("Content-Type") == "image/svg+xml; charset=utf-8");
  CHECK(svg->get_header_value("Content-Security-Policy").find("default-src 'none'") != std::string::npos);
  CHECK(svg->body.find("<title>ask</title>") != std::string::npos);

  auto run = c->Post("/workflows/pausing/run", bearer(), "{}", "application/json");
  REQUIRE(run);
  REQUIRE(run->status == 201);
  const std::string id = orch::parse_json(run->body)->find("id")->as_string();
  for (int i = 0; i < 400; ++i) {
    auto r = c->Get(("/runs/" + id).c_str(), bearer());
    if (r && r->body.find("\"status\":\"interrupted\"") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  auto run_svg = c->Get(("/runs/" + id + "/graph.svg").c_str(), bearer());
  REQUIRE(run_svg);
  REQUIRE(run_svg->status == 200);
  // Node a completed: filled with the completed colour; b never ran: unfilled.
  CHECK(run_svg->body.find(orch::svg_state_colour("completed")) != std::string::npos);
  const size_t b = run_svg->body.find("<title>b</title>");
  REQUIRE(b != std::string::npos);
  CHECK(run_svg->body.find("fill=\"none\"", b) < run_svg->body.find("</g>", b));
#else
  CHECK(svg->status == 501);
  CHECK(svg->body.find("mermaid") != std::string::npos);
#endif

  auto none = c->Get("/runs/no-such-run/graph.svg", bearer());
  REQUIRE(none);
  CHECK(none->status == 404);
}

TEST_CASE("a 10 000-node workflow's picture is refused quickly", "[server][console]") {
  orch::server::ServerConfig config = with_token();
  TestServer server(config);
  auto c = server.client();
  auto created = c->Post("/workflows", bearer(), big_workflow(10000), "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 201);
  auto start = std::chrono::steady_clock::now();
  auto svg = c->Get("/workflows/big/graph.svg", bearer());
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(svg);
#if ORCH_HAS_GRAPHVIZ
  CHECK(svg->status == 422);
  CHECK(svg->body.find("graph_too_large") != std::string::npos);
#else
  CHECK(svg->status == 501);
#endif
  CHECK(took < 5s);
  // The server still answers.
  auto health = c->Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
}
