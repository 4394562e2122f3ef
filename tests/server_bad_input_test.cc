// SPDX-License-Identifier: MIT
// Table-driven bad input for the HTTP API: each case gets its status and a
// message saying what is wrong, and the server answers /health after each.
#include <string>
#include <vector>

#include "catch.h"
#include "support/server_fixture.h"

using orch::Value;

namespace {

struct Case {
  const char* method;
  std::string path;
  std::string body;
  int status;
  std::string message_part;  // must appear in error.message ("" = any)
};

const char* kWorkflow = R"({"id": "w", "nodes": {"t": {"type": "transform", "updates": {"a": 1}}},
  "edges": [["__start__", "t"], ["t", "__end__"]]})";

}  // namespace

TEST_CASE("bad input table", "[server][reliability]") {
  orch::server::ServerConfig config;
  config.max_body_bytes = 64 * 1024;
  orch::testing::TestServer server(config);
  auto c = server.client();
  REQUIRE(c->Post("/workflows", kWorkflow, "application/json")->status == 201);

  std::string deep = std::string(2000, '[') + std::string(2000, ']');
  std::string deep_object = "{\"input\": " + std::string(1000, '[') + std::string(1000, ']') + "}";
  std::string many_callbacks = R"({"url": "http://127.0.0.1:1/cb"})";
  for (int i = 0; i < 16; ++i) many_callbacks += R"(, {"url": "http://127.0.0.1:1/cb"})";
  const std::vector<Case> cases = {
      {"POST", "/runs", "{", 400, "invalid JSON body"},
      {"POST", "/runs", "[]", 400, "body must be a JSON object"},
      {"POST", "/runs", "\"str\"", 400, "body must be a JSON object"},
      {"POST", "/runs", "{}", 400, "missing required field"},
      {"POST", "/runs", R"({"workflow": 5})", 400, "workflow must be an object"},
      {"POST", "/runs", R"({"workflow_id": 5})", 400, "workflow_id must be a non-empty string"},
      {"POST", "/runs", R"({"workflow_id": "w", "steps": []})", 400, "only one of"},
      {"POST", "/runs", R"({"workflow_id": "nope"})", 404, "workflow not found"},
      {"POST", "/runs", R"({"workflow_id": "w", "config": []})", 400, "config must be an object"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": {}})", 400, "callbacks must be an array"},
      {"POST", "/runs", R"({"workflow_id": "w", "idempotency_key": 7})", 400, "idempotency_key must be a string"},
      {"POST", "/runs", R"({"workflow_id": "w", "config": {"recursion_limit": 0}})", 400, "recursion_limit"},
      {"POST", "/runs", R"({"workflow_id": "w", "config": {"durability": "sometimes"}})", 400, "durability"},
      {"POST", "/runs", R"({"workflow_id": "w", "config": {"interrupt_before": ["ghost"]}})", 400, "unknown node"},
      {"POST", "/runs", R"({"steps": "x"})", 400, "steps must be an array"},
      {"POST", "/runs", R"({"steps": [{"id": "a"}, {"id": "a"}]})", 400, "duplicate step id"},
      {"POST", "/runs", R"({"steps": [{"id": "a", "depends_on": ["b"]}]})", 400, "unknown step id"},
      {"POST", "/runs", R"({"workflow": {"nodes": {"x": {"type": "teleport"}}, "edges": [["__start__","x"],["x","__end__"]]}})", 400,
       "validation errors"},
      {"POST", "/runs", deep, 400, "nesting deeper"},
      {"POST", "/runs", deep_object, 400, "nesting deeper"},
      {"POST", "/runs", "{\"workflow_id\": \"w\", \"input\": \"\xff\xfe\"}", 400, "invalid JSON body"},
      {"POST", "/runs", std::string(100 * 1024, ' '), 413, "size limit"},
      {"GET", "/runs/nope", "", 404, "run not found"},
      {"GET", "/runs/nope/steps", "", 404, "run not found"},
      {"GET", "/runs/nope/steps/x", "", 404, "step not found"},
      {"GET", "/runs/nope/checkpoints", "", 404, "run not found"},
      {"GET", "/runs/nope/checkpoints/x", "", 404, "checkpoint not found"},
      {"GET", "/runs/nope/events", "", 404, "run not found"},
      {"POST", "/runs/nope/cancel", "", 404, "run not found"},
      {"POST", "/runs/nope/retry", "", 404, "run not found"},
      {"POST", "/runs/nope/resume", "", 404, "run not found"},
      {"POST", "/runs/nope/state", R"({"updates": {}})", 404, "run not found"},
      {"POST", "/runs/nope/replay", R"({"checkpoint_id": "x"})", 404, "checkpoint not found"},
      {"POST", "/runs/nope/replay", R"({})", 400, "missing required field"},
      {"POST", "/runs/fork", R"({})", 400, "missing required field: checkpoint_id"},
      {"POST", "/runs/fork", R"({"checkpoint_id": 5})", 400, "missing required field: checkpoint_id"},
      {"POST", "/runs/fork", R"({"checkpoint_id": "x"})", 404, "checkpoint not found"},
      {"GET", "/runs?limit=abc", "", 200, ""},
      {"GET", "/runs?status=weird", "", 400, "unknown status"},
      {"POST", "/workflows", R"({"id": 5})", 400, "id must be a non-empty string"},
      {"POST", "/workflows", R"({"definition_json": "{nope"})", 400, "definition_json is not valid JSON"},
      {"POST", "/workflows", R"({"definition_json": [1]})", 400, "must be a JSON object"},
      {"POST", "/workflows", kWorkflow, 409, "already exists"},
      {"GET", "/workflows/nope", "", 404, "workflow not found"},
      {"PUT", "/workflows/nope", "{}", 404, "workflow not found"},
      {"PUT", "/workflows/w", "[", 400, "invalid JSON body"},
      {"DELETE", "/workflows/nope", "", 404, "workflow not found"},
      {"POST", "/workflows/nope/run", "{}", 404, "workflow not found"},
      {"POST", "/workflows/w/run", "not json", 400, "invalid JSON body"},
      {"POST", "/workflows/nope/validate", "", 404, "workflow not found"},
      {"GET", "/runs/x/stream?mode=nonsense", "", 404, "run not found"},
      {"PATCH", "/runs", "{}", 405, "not allowed"},
      {"DELETE", "/health", "", 405, "not allowed"},
      {"GET", "/no/such/route", "", 404, "endpoint not found"},
      {"POST", "/internal/agent-events/nope/s", "{}", 404, "run not found"},
      {"POST", "/internal/agent-events/nope/s", "[", 400, "invalid JSON body"},
      // ---- issue #19 hardening: outbound URLs, callback headers, network policy ----
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "ftp://x/"}]})", 400, "callbacks[0].url: url scheme"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:99999999999/"}]})", 400,
       "port must be 1-65535"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:0/"}]})", 400, "port must be"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http:///cb"}]})", 400, "has no host"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://a b/"}]})", 400, "whitespace"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://u:p@127.0.0.1/"}]})", 400, "user info"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"events": []}]})", 400, "callbacks[0].url is required"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [7]})", 400, "callbacks[0] must be an object"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://169.254.169.254/latest/meta-data"}]})", 400,
       "link-local"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://[fe80::1]/cb"}]})", 400, "link-local"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://2852039166/"}]})", 400, "dotted quad"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"X-A": "v\r\nX-Injected: 1"}}]})",
       400, "must not contain CR, LF or NUL"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"X-A": "v\u0000"}}]})",
       400, "must not contain CR, LF or NUL"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"X-A\r\nX-B": "v"}}]})",
       400, "not an RFC 7230 token"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"Bad Name": "v"}}]})",
       400, "not an RFC 7230 token"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"": "v"}}]})",
       400, "not an RFC 7230 token"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"hOST": "evil"}}]})",
       400, "set by orch"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"Content-Length": "0"}}]})",
       400, "set by orch"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"transfer-encoding": "chunked"}}]})",
       400, "set by orch"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"Connection": "close"}}]})",
       400, "set by orch"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"X-Orch-Signature": "v1=00"}}]})",
       400, "set by orch"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"x-nullboiler-timestamp": "1"}}]})",
       400, "set by orch"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"X-A": 5}}]})",
       400, "must be a string"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": ["X-A"]}]})",
       400, "must be an object of strings"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "headers": {"X-A": ")" +
                            std::string(9000, 'v') + R"("}}]})",
       400, "longer than 8192 bytes"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "events": "all"}]})", 400,
       "events must be an array of strings"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [{"url": "http://127.0.0.1:1/cb", "hmac_secret": 1}]})", 400,
       "hmac_secret must be a string"},
      {"POST", "/runs", R"({"workflow_id": "w", "callbacks": [)" + many_callbacks + "]}", 400, "at most 16 per run"},
      {"POST", "/workflows/w/run", R"({"callbacks": [{"url": "ftp://x/"}]})", 400, "callbacks[0].url"},
      {"POST", "/workers", R"({"id": "b1", "url": "ftp://x/webhook"})", 400, "invalid worker url"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://127.0.0.1:99999999999/webhook"})", 400, "port must be 1-65535"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://127.0.0.1:8080/webhook\r\nX-Injected: 1"})", 400, "control characters"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://127.0.0.1:8080/web hook"})", 400, "whitespace"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://169.254.169.254/webhook"})", 400, "link-local"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://[fe80::a:1]:80/webhook"})", 400, "link-local"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://[::ffff:169.254.169.254]/webhook"})", 400, "link-local"},
      {"POST", "/workers", R"({"id": "b1", "url": "mqtt://169.254.169.254/jobs", "protocol": "mqtt"})", 400, "link-local"},
      {"POST", "/workers", R"({"id": "b1", "url": "redis://169.254.169.254:6379/jobs", "protocol": "redis_stream"})", 400,
       "link-local"},
      {"POST", "/workers", R"({"id": "b1", "url": "http://127.0.0.1:1883/jobs", "protocol": "mqtt"})", 400, "does not speak http"},
      {"POST", "/workers", R"({"id": "b1", "url": "mqtt://127.0.0.1:99999/jobs", "protocol": "mqtt"})", 400, "port must be"},
      // Ids: bounded, no control characters; paths decoded once.
      {"POST", "/workflows", "{\"id\": \"" + std::string(300, 'w') + "\", \"nodes\": {}, \"edges\": []}", 400, "300 bytes long"},
      {"POST", "/workflows", R"({"id": "bad\u0001id", "nodes": {}, "edges": []})", 400, "control characters"},
      {"POST", "/workflows", R"({"id": "nul\u0000id", "nodes": {}, "edges": []})", 400, "control characters"},
      {"GET", "/runs/" + std::string(300, 'r'), "", 400, "id in the path"},
      {"GET", "/runs/a%00b", "", 400, "control characters"},
      {"GET", "/runs/a%0Ab/steps", "", 400, "control characters"},
      {"GET", "/workflows/%2541", "", 404, "not found"},
      {"POST", "/runs", "{\"workflow_id\": \"w\", \"idempotency_key\": \"" + std::string(300, 'k') + "\"}", 400,
       "idempotency key is 300 bytes long"},
      // Limits of the engine as a request meets them.
      {"POST", "/runs", R"({"workflow_id": "w", "config": {"recursion_limit": 9223372036854775807}})", 201, ""},
  };
  for (const Case& k : cases) {
    INFO(k.method << " " << k.path << " " << k.body.substr(0, 80));
    std::string m = k.method;
    httplib::Result r = m == "GET"     ? c->Get(k.path.c_str())
                        : m == "POST"  ? c->Post(k.path.c_str(), k.body, "application/json")
                        : m == "PUT"   ? c->Put(k.path.c_str(), k.body, "application/json")
                        : m == "PATCH" ? c->Patch(k.path.c_str(), k.body, "application/json")
                                       : c->Delete(k.path.c_str());
    REQUIRE(r);
    CHECK(r->status == k.status);
    if (k.status >= 400) {
      auto body = orch::parse_json(r->body);
      REQUIRE(body.ok());
      const Value& message = (*body)["error"]["message"];
      REQUIRE(message.is_string());
      CHECK(message.as_string().find(k.message_part) != std::string::npos);
    }
    REQUIRE(c->Get("/health")->status == 200);
  }

  // Huge headers are refused, and the server keeps answering.
  httplib::Headers huge = {{"X-Big", std::string(64 * 1024, 'a')}};
  auto big = c->Get("/health", huge);
  if (big) CHECK(big->status >= 400);
  auto fresh = server.client();
  CHECK(fresh->Get("/health")->status == 200);
}
