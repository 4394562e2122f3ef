// SPDX-License-Identifier: MIT
// docs/openapi.json against the server: every route of the route tables is
// documented and nothing else is, GET /openapi.json serves the file as it is
// in the tree, and each documented operation answers with an error envelope
// or a documented status. (Each JSON response of every server test is
// checked against its schema by the ctest entry openapi_responses_match_schemas.)
#include <fstream>
#include <set>
#include <sstream>

#include "catch.h"
#include "http/openapi_document.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"

using orch::Value;

namespace {

// "METHOD /pattern" for each route, placeholders as "{}".
std::set<std::string> table_routes() {
  std::set<std::string> out;
  for (const orch::server::Route& r : orch::server::all_routes()) out.insert(std::string(r.method) + " " + r.pattern);
  return out;
}

std::set<std::string> documented_routes(const Value& doc) {
  std::set<std::string> out;
  for (const auto& [path, item] : doc["paths"].as_object()) {
    std::string pattern;
    bool in_name = false;
    for (char ch : path) {
      if (ch == '{') {
        in_name = true;
        pattern += "{}";
      } else if (ch == '}') {
        in_name = false;
      } else if (!in_name) {
        pattern += ch;
      }
    }
    for (const auto& [method, op] : item.as_object()) {
      if (method == "parameters" || method == "summary" || method == "description") continue;
      std::string upper;
      for (char ch : method) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      out.insert(upper + " " + pattern);
    }
  }
  return out;
}

// What one set has and the other lacks, as "missing from <name>: ..." lines.
std::vector<std::string> differences(const std::set<std::string>& routes, const std::set<std::string>& documented) {
  std::vector<std::string> out;
  for (const std::string& r : routes) {
    if (!documented.count(r)) out.push_back("missing from docs/openapi.json: " + r);
  }
  for (const std::string& d : documented) {
    if (!routes.count(d)) out.push_back("documented but not served: " + d);
  }
  return out;
}

Value served_document() {
  auto doc = orch::parse_json(std::string(orch::server::openapi_document()));
  REQUIRE(doc.ok());
  return *doc;
}

}  // namespace

TEST_CASE("every route of the route tables is in the OpenAPI document, and only those", "[server][openapi]") {
  std::vector<std::string> diff = differences(table_routes(), documented_routes(served_document()));
  std::string all;
  for (const std::string& d : diff) all += d + "\n";
  INFO(all);
  CHECK(diff.empty());
}

TEST_CASE("the route comparison catches a route missing on either side", "[server][openapi]") {
  Value doc = served_document();
  std::set<std::string> documented = documented_routes(doc);
  std::set<std::string> routes = table_routes();
  REQUIRE(documented.erase("POST /runs/{}/cancel") == 1);
  routes.insert("GET /runs/{}/secret");
  std::vector<std::string> diff = differences(routes, documented);
  CHECK(diff == std::vector<std::string>{"missing from docs/openapi.json: GET /runs/{}/secret",
                                         "missing from docs/openapi.json: POST /runs/{}/cancel"});
  CHECK(differences(table_routes(), {"GET /nowhere"}).back() == "documented but not served: GET /nowhere");
}

TEST_CASE("GET /openapi.json serves docs/openapi.json as it is in the tree", "[server][openapi]") {
  std::ifstream in(std::string(ORCH_TEST_DATA_DIR) + "/../../docs/openapi.json", std::ios::binary);
  REQUIRE(in);
  std::stringstream file;
  file << in.rdbuf();
  orch::testing::TestServer server;
  auto r = server.client()->Get("/openapi.json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  CHECK(r->body == file.str());
  Value doc = orch::testing::json_body(r);
  CHECK(doc["openapi"].as_string().rfind("3.1", 0) == 0);
}

TEST_CASE("every documented GET answers, so its response is checked against the schema", "[server][openapi]") {
  // Ids that do not exist: each route answers its error envelope (validated
  // with the rest), and list routes answer their documented shapes.
  orch::testing::TestServer server;
  auto c = server.client();
  for (const std::string& route : table_routes()) {
    if (route.rfind("GET ", 0) != 0 || route == "GET /runs/{}/stream") continue;
    std::string path = route.substr(4);
    for (size_t at; (at = path.find("{}")) != std::string::npos;) path.replace(at, 2, "missing-id");
    auto r = c->Get(path);
    REQUIRE(r);
    INFO(route);
    CHECK((r->status == 200 || r->status == 404 || (route == "GET /ui" && r->status == 308)));
  }
  auto snapshot = c->Get("/runs/missing-id/stream", {{"Accept", "application/json"}});
  REQUIRE(snapshot);
  CHECK(snapshot->status == 404);
}
