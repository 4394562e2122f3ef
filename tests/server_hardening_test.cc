// SPDX-License-Identifier: MIT
// `orch serve` against requests that once crashed, starved or exhausted it
// (issue: hardening). Each case failed before its fix; bad input that only
// needs a status and a message is in server_bad_input_test.cc's table.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "log/log.h"
#include "orch/thread_guard.h"
#include "retention.h"
#include "support/server_fixture.h"

using namespace std::chrono_literals;
using orch::RunStatus;
using orch::Value;

TEST_CASE("a run of 100 000 in-process supersteps completes in orch serve", "[server][hardening]") {
  // Each superstep of route/transform nodes used to be entered from the
  // previous one: the stack overflowed at a few thousand, and the resumed run
  // crashed the restarted server again.
  orch::testing::TestServer server;
  auto c = server.client();
  const std::string body = R"({"workflow": {
      "state_schema": {"count": {"type": "number", "reducer": "add"}},
      "nodes": {"inc": {"type": "transform", "updates": {"count": 1}},
                "check": {"type": "route", "input": "state.count", "routes": {"50000": "__end__", "again": "inc"}, "default": "again"}},
      "edges": [["__start__","inc"],["inc","check"],["check:again","inc"],["check:50000","__end__"]]},
    "config": {"recursion_limit": 100001}})";
  auto res = c->Post("/runs", body, "application/json");
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 201);
  std::string id = orch::parse_json(res->body)->find("id")->as_string();
  auto done = server.app().engine->wait(id, 10min);
  REQUIRE(done.ok());
  CHECK(done->status == RunStatus::kCompleted);
  CHECK(done->state["count"].as_int() == 50000);
  CHECK(c->Get("/health")->status == 200);
}

namespace {

// Sends `request` on a fresh connection and returns what the server answers
// until it closes the connection or `wait` passes without more bytes.
// A connection to 127.0.0.1:`port`, or -1.
int connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string raw_exchange(int port, const std::string& request, std::chrono::milliseconds wait = 3000ms) {
  int fd = connect_loopback(port);
  if (fd < 0) return "";
  timeval tv{static_cast<time_t>(wait.count() / 1000), static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may stop reading (and answer) early
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
    // One response is enough: stop once its body (Content-Length) is in.
    size_t head_end = response.find("\r\n\r\n");
    size_t cl = response.find("Content-Length: ");
    if (head_end != std::string::npos && cl != std::string::npos && cl < head_end) {
      size_t len = std::stoul(response.substr(cl + 16));
      if (response.size() >= head_end + 4 + len) break;
    }
  }
  close(fd);
  return response;
}

// Starts a run that pauses at once (an interrupt node); returns its id.
std::string start_paused_run(orch::testing::TestServer& server) {
  auto res = server.client()->Post("/runs", R"({"workflow": {"nodes": {"i": {"type": "interrupt"}},
      "edges": [["__start__","i"],["i","__end__"]]}})", "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 201);
  std::string id = orch::parse_json(res->body)->find("id")->as_string();
  REQUIRE(server.app().engine->wait(id, 10s)->status == RunStatus::kInterrupted);
  return id;
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return -1;
  return std::stoi(response.substr(9, 3));
}

// Everything the server sends on a fresh connection after `request`, until it
// closes the connection (or `wait` passes without more bytes).
std::string raw_until_close(int port, const std::string& request, std::chrono::milliseconds wait = 3000ms) {
  int fd = connect_loopback(port);
  if (fd < 0) return "";
  timeval tv{static_cast<time_t>(wait.count() / 1000), static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// The JSON error envelope of a raw response: {"code","message"}.
orch::Value error_of(const std::string& response) {
  size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return orch::Value();
  auto v = orch::parse_json(response.substr(body + 4));
  return v.ok() ? (*v)["error"] : orch::Value();
}

}  // namespace

TEST_CASE("a write request with no body at all is answered at once, as having an empty body", "[server][compat]") {
  // `curl -X POST $BASE/runs/$ID/cancel` sends neither Content-Length nor
  // Transfer-Encoding (RFC 9112 §6.3: a zero-length body).
  orch::testing::TestServer server;
  auto c = server.client();
  const std::string id = start_paused_run(server);

  // A raw socket waits at most 2 s: the old behaviour waited 5 s, then 400.
  std::string answer = raw_exchange(server.port(), "POST /runs/" + id + "/cancel HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 2000ms);
  INFO(answer);
  CHECK(status_of(answer) == 200);
  CHECK(server.app().engine->get_run(id)->status == RunStatus::kCancelled);
  answer = raw_exchange(server.port(), "DELETE /workflows/none HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 2000ms);
  CHECK(status_of(answer) == 404);

  // And with curl itself.
  std::string cmd = "curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X POST http://127.0.0.1:" +
                    std::to_string(server.port()) + "/runs/no-such-run/cancel";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char out[64] = {0};
  size_t n = fread(out, 1, sizeof(out) - 1, p);
  pclose(p);
  CHECK(std::string(out, n) == "404");
}

TEST_CASE("bodies are bounded however they are framed", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.max_body_bytes = 64 * 1024;
  orch::testing::TestServer server(config);
  const std::string head = "POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";

  SECTION("a chunked body stops being read at the limit: 413") {
    std::string chunk(8192, ' ');
    std::string request = head + "Transfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 40; ++i) request += "2000\r\n" + chunk + "\r\n";  // 320 KiB
    request += "0\r\n\r\n";
    std::string answer = raw_exchange(server.port(), request);
    INFO(answer.substr(0, 300));
    CHECK(status_of(answer) == 413);
    CHECK(answer.find("size limit") != std::string::npos);
  }
  SECTION("a chunked body under the limit is read") {
    std::string json = R"({"workflow": {"nodes": {"t": {"type": "transform", "updates": {"a": 1}}},
      "edges": [["__start__","t"],["t","__end__"]]}})";
    char size[16];
    snprintf(size, sizeof(size), "%zx", json.size());
    std::string answer = raw_exchange(server.port(), head + "Transfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + json + "\r\n0\r\n\r\n");
    CHECK(status_of(answer) == 201);
  }
  SECTION("a declared Content-Length over the limit is refused before its body arrives") {
    std::string answer = raw_exchange(server.port(), head + "Content-Length: 1000000000\r\n\r\n{", 2000ms);
    CHECK(status_of(answer) == 413);
  }
  SECTION("compressed bodies are refused: they could inflate past any limit") {
    std::string answer = raw_exchange(server.port(), head + "Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd");
    CHECK(status_of(answer) == 415);
    CHECK(answer.find("Content-Encoding") != std::string::npos);
  }
  SECTION("multipart bodies are refused") {
    std::string answer = raw_exchange(server.port(), "POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 4\r\n\r\nabcd");
    CHECK(status_of(answer) == 415);
  }
  CHECK(server.client()->Get("/health")->status == 200);
}

TEST_CASE("too many or too large headers get 431", "[server][hardening]") {
  orch::testing::TestServer server;
  std::string request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 150; ++i) request += "X-Filler-" + std::to_string(i) + ": x\r\n";
  std::string answer = raw_exchange(server.port(), request + "\r\n");
  CHECK(status_of(answer) == 431);
  std::string big = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 20; ++i) big += "X-Big-" + std::to_string(i) + ": " + std::string(4000, 'a') + "\r\n";
  CHECK(status_of(raw_exchange(server.port(), big + "\r\n")) == 431);
  CHECK(server.client()->Get("/health")->status == 200);
}

TEST_CASE("cross-site requests and DNS rebinding are refused on a server without a token", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.allowed_origins = {"http://console.example"};
  orch::testing::TestServer server(config);
  const std::string port = std::to_string(server.port());
  const std::string run = R"({"workflow": {"nodes": {"t": {"type": "transform", "updates": {"a": 1}}},
      "edges": [["__start__","t"],["t","__end__"]]}})";
  auto post = [&](const std::string& extra_headers) {
    return raw_exchange(server.port(), "POST /runs HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n" + extra_headers +
                                           "Content-Length: " + std::to_string(run.size()) + "\r\n\r\n" + run);
  };
  // A form or text/plain POST from a foreign page (no preflight needed).
  CHECK(status_of(post("Origin: http://evil.example\r\nContent-Type: text/plain\r\n")) == 403);
  CHECK(status_of(post("Origin: null\r\nContent-Type: application/x-www-form-urlencoded\r\n")) == 403);
  CHECK(status_of(post("Sec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\n")) == 403);
  // curl and SDKs send no Origin.
  CHECK(status_of(post("Content-Type: application/json\r\n")) == 201);
  // The server's own pages, and an allowed origin (with CORS headers).
  CHECK(status_of(post("Origin: http://127.0.0.1:" + port + "\r\nContent-Type: application/json\r\n")) == 201);
  std::string allowed = post("Origin: http://console.example\r\nContent-Type: application/json\r\n");
  CHECK(status_of(allowed) == 201);
  CHECK(allowed.find("Access-Control-Allow-Origin: http://console.example") != std::string::npos);
  std::string preflight = raw_exchange(server.port(), "OPTIONS /runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       "Origin: http://console.example\r\nAccess-Control-Request-Method: POST\r\n\r\n");
  CHECK(status_of(preflight) == 204);
  // DNS rebinding: a name that is not this server's.
  std::string rebound = raw_exchange(server.port(), "GET /runs HTTP/1.1\r\nHost: attacker.example:" + port + "\r\n\r\n");
  CHECK(status_of(rebound) == 403);
  CHECK(rebound.find("DNS rebinding") != std::string::npos);
  CHECK(status_of(raw_exchange(server.port(), "GET /health HTTP/1.1\r\nHost: localhost:" + port + "\r\n\r\n")) == 200);
}

TEST_CASE("with a token, any Host is served (the token is the defence)", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.api_token = "secret";
  orch::testing::TestServer server(config);
  std::string answer = raw_exchange(server.port(), "GET /runs HTTP/1.1\r\nHost: orch.internal.example\r\n"
                                    "Authorization: Bearer secret\r\n\r\n");
  CHECK(status_of(answer) == 200);
}

TEST_CASE("unsafe or contradictory HTTP settings stop start-up", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.http_threads = 16;
  config.max_sse_clients = 200;
  CHECK(orch::server::check_config(config).message().find("max_sse_clients") != std::string::npos);
  config.max_sse_clients = 8;
  CHECK(orch::server::check_config(config).ok());
  config.host = "0.0.0.0";
  CHECK(orch::server::check_config(config).message().find("without an API token") != std::string::npos);
  config.allow_unauthenticated_remote = true;
  CHECK(orch::server::check_config(config).ok());
  config.allow_unauthenticated_remote = false;
  config.api_token = "t";
  CHECK(orch::server::check_config(config).ok());

  orch::server::ServerConfig flags;
  CHECK(orch::server::parse_serve_flags({"--host", "0.0.0.0"}, &flags).code() == orch::StatusCode::kInvalidArgument);
  orch::server::ServerConfig allowed;
  CHECK(orch::server::parse_serve_flags({"--host", "0.0.0.0", "--allow-unauthenticated-remote"}, &allowed).ok());
}

namespace {

// A client that opens a connection and sends `prefix`, then one more byte
// every `gap` until it is closed: slowloris.
class SlowClient {
 public:
  SlowClient(int port, std::string prefix, std::chrono::milliseconds gap) {
    fd_ = connect_loopback(port);
    connected_ = fd_ >= 0;
    if (connected_) (void)!send(fd_, prefix.data(), prefix.size(), MSG_NOSIGNAL);
    thread_ = std::thread([this, gap] {
      std::unique_lock<std::mutex> lock(mu_);
      while (!done_ && !cv_.wait_for(lock, gap, [this] { return done_; })) {
        if (send(fd_, "X", 1, MSG_NOSIGNAL) != 1) break;
      }
    });
  }
  ~SlowClient() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }
  // What the server sent, waiting at most `wait`.
  std::string answer(std::chrono::milliseconds wait) {
    timeval tv{static_cast<time_t>(wait.count() / 1000), static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string out;
    char buf[2048];
    for (;;) {  // until the server closes the connection (or `wait` passes with nothing new)
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

TEST_CASE("full SSE streams and slow clients do not starve the API", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.http_threads = 16;
  config.max_sse_clients = 8;  // 8 threads stay for the rest of the API
  config.header_timeout_ms = 3000;
  orch::testing::TestServer server(config);
  auto c = server.client();
  const std::string id = start_paused_run(server);

  // Every stream the server allows, held open.
  std::atomic<int> streaming{0};
  std::atomic<bool> stop_streams{false};
  std::vector<std::thread> streams;
  for (int i = 0; i < 8; ++i) {
    streams.emplace_back([&] {
      httplib::Client sc("127.0.0.1", server.port());
      sc.set_read_timeout(20, 0);
      bool counted = false;
      sc.Get(("/runs/" + id + "/stream").c_str(), [&](const char*, size_t) {
        if (!counted) {
          counted = true;
          ++streaming;
        }
        return !stop_streams.load();
      });
    });
  }
  for (int i = 0; i < 1000 && streaming < 8; ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(streaming == 8);
  // Forty clients trickling their headers, and forty saying nothing at all.
  std::vector<std::unique_ptr<SlowClient>> slow;
  for (int i = 0; i < 40; ++i) {
    slow.push_back(std::make_unique<SlowClient>(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", 200ms));
    slow.push_back(std::make_unique<SlowClient>(server.port(), "", 1h));
  }
  std::this_thread::sleep_for(300ms);

  // The API answers within a second: each client gives up after one.
  for (int i = 0; i < 5; ++i) {
    httplib::Client quick("127.0.0.1", server.port());
    quick.set_connection_timeout(1, 0);
    quick.set_read_timeout(1, 0);
    auto health = quick.Get("/health");
    REQUIRE(health);
    CHECK(health->status == 200);
    auto started = quick.Post("/runs", R"({"workflow": {"nodes": {"t": {"type": "transform", "updates": {"a": 1}}},
        "edges": [["__start__","t"],["t","__end__"]]}})", "application/json");
    REQUIRE(started);
    CHECK(started->status == 201);
  }
  // Past the header deadline the slow ones are answered 408 and dropped.
  std::string late = slow.front()->answer(5000ms);
  CHECK(late.rfind("HTTP/1.1 408", 0) == 0);
  CHECK(late.find("header_timeout_ms") != std::string::npos);

  stop_streams = true;
  REQUIRE(c->Post(("/runs/" + id + "/resume").c_str(), "{}", "application/json")->status == 200);
  for (auto& t : streams) t.join();
}

TEST_CASE("one client's connections are capped", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.max_connections_per_client = 10;
  orch::testing::TestServer server(config);
  std::vector<std::unique_ptr<SlowClient>> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(std::make_unique<SlowClient>(server.port(), "", 1h));
  std::this_thread::sleep_for(200ms);  // accepted, waiting for their headers
  std::string answer = raw_exchange(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  CHECK(status_of(answer) == 429);
  CHECK(answer.find("max_connections_per_client") != std::string::npos);
  idle.clear();
  std::this_thread::sleep_for(200ms);  // their closes are seen
  CHECK(status_of(raw_exchange(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 200);
}

TEST_CASE("the API token can come from a file or the environment instead of argv", "[server][hardening]") {
  // argv is visible to every user of the machine (ps).
  std::string path = "/tmp/orch-token-" + std::to_string(getpid());
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs("from-file\n", f);
  std::fclose(f);
  orch::server::ServerConfig from_file;
  REQUIRE(orch::server::parse_serve_flags({"--token-file", path}, &from_file).ok());
  CHECK(from_file.api_token == "from-file");
  std::remove(path.c_str());
  orch::server::ServerConfig missing;
  CHECK(orch::server::parse_serve_flags({"--token-file", path}, &missing).message().find("cannot read") != std::string::npos);

  setenv("ORCH_API_TOKEN", "from-env", 1);
  orch::server::ServerConfig from_env;
  REQUIRE(orch::server::parse_serve_flags({}, &from_env).ok());
  CHECK(from_env.api_token == "from-env");
  orch::server::ServerConfig flag_wins;
  REQUIRE(orch::server::parse_serve_flags({"--token", "from-flag"}, &flag_wins).ok());
  CHECK(flag_wins.api_token == "from-flag");
  unsetenv("ORCH_API_TOKEN");
}

TEST_CASE("a body trickled a byte at a time is cut at its deadline", "[server][hardening]") {
  orch::server::ServerConfig config;
  config.body_timeout_ms = 1000;
  orch::testing::TestServer server(config);
  SlowClient slow(server.port(), "POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{", 200ms);
  std::string answer = slow.answer(5000ms);
  INFO(answer);
  CHECK(answer.rfind("HTTP/1.1 408", 0) == 0);
  CHECK(answer.find("body_timeout_ms") != std::string::npos);
}

TEST_CASE("the retention thread survives a store that throws, and keeps sweeping", "[server][hardening]") {
  struct ThrowingStore : orch::StoreWrapper {
    using StoreWrapper::StoreWrapper;
    orch::Result<std::vector<orch::RunRecord>> list_runs(const orch::RunFilter&) override {
      throw std::runtime_error("store bug");
    }
  };
  orch::testing::TestServer server;
  auto original = server.app().store;
  server.app().store = std::make_shared<ThrowingStore>(original);
  const uint64_t before = orch::thread_exceptions();
  {
    orch::server::RetentionSweeper sweeper(server.app(), 40);  // sweeps every 10 ms
    // Three throwing sweeps: the thread went on after each.
    for (int i = 0; i < 2000 && orch::thread_exceptions() < before + 3; ++i) std::this_thread::sleep_for(5ms);
    CHECK(orch::thread_exceptions() >= before + 3);
  }
  server.app().store = original;
  CHECK(server.client()->Get("/health")->status == 200);
}

TEST_CASE("JSON routes take a body only as application/json", "[server][hardening]") {
  // SPEC §12: a form or text/plain POST is a request a browser sends
  // cross-site without asking; application/json is not.
  const std::string run = R"({"workflow": {"nodes": {"t": {"type": "transform", "updates": {"a": 1}}},
      "edges": [["__start__","t"],["t","__end__"]]}})";
  for (const char* token : {"", "secret"}) {
    INFO("token: '" << token << "'");
    orch::server::ServerConfig config;
    config.api_token = token;
    orch::testing::TestServer server(config);
    auto c = server.client();
    if (*token != '\0') c->set_bearer_token_auth(token);
    for (const char* type : {"text/plain", "application/x-www-form-urlencoded", "application/jsonp", "json",
                             "application/json-patch", "text/json"}) {
      INFO(type);
      auto r = c->Post("/runs", run, type);
      REQUIRE(r);
      CHECK(r->status == 415);
      auto body = orch::parse_json(r->body);
      REQUIRE(body.ok());
      CHECK((*body)["error"]["code"].as_string() == "unsupported_media_type");
      CHECK((*body)["error"]["message"].as_string().find("Content-Type: application/json") != std::string::npos);
    }
    REQUIRE(c->Post("/workflows", R"({"id": "x", "nodes": {"t": {"type": "transform", "updates": {"a": 1}}},
        "edges": [["__start__","t"],["t","__end__"]]})", "application/json")->status == 201);
    CHECK(c->Put("/workflows/x", R"({"version": 2})", "text/plain")->status == 415);
    CHECK(c->Post("/workers", R"({"id": "w", "url": "http://127.0.0.1:9/a"})", "text/plain")->status == 415);
    // No Content-Type at all (httplib's client always sends one: raw).
    const std::string auth = *token != '\0' ? std::string("Authorization: Bearer ") + token + "\r\n" : "";
    std::string bare = raw_exchange(server.port(), "POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                                                       "Content-Length: " + std::to_string(run.size()) + "\r\n\r\n" + run);
    CHECK(status_of(bare) == 415);
    CHECK(error_of(bare)["message"].as_string().find("no Content-Type") != std::string::npos);
    // JSON however it is spelled.
    for (const char* type : {"application/json", "application/json; charset=utf-8", "Application/JSON",
                             " application/json ;charset=UTF-8", "application/merge-patch+json"}) {
      INFO(type);
      CHECK(c->Post("/runs", run, type)->status == 201);
    }
    // An empty body needs no Content-Type: POST /runs/{id}/resume takes {}.
    const std::string id = orch::parse_json(c->Post("/runs", R"({"workflow": {"nodes": {"i": {"type": "interrupt"}},
        "edges": [["__start__","i"],["i","__end__"]]}})", "application/json")->body)->find("id")->as_string();
    REQUIRE(server.app().engine->wait(id, 10s)->status == RunStatus::kInterrupted);
    std::string empty = raw_exchange(server.port(), "POST /runs/" + id + "/resume HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                                                        "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n");
    CHECK(status_of(empty) == 200);
  }
}

TEST_CASE("ambiguous message framing is refused and the connection closed", "[server][hardening]") {
  // RFC 9112 §6.3: a proxy in front that read the other length would take
  // the rest for a request of its own (request smuggling).
  orch::testing::TestServer server;
  const std::string head = "POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  const std::string smuggled = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  SECTION("two Content-Length headers") {
    std::string answer = raw_until_close(server.port(), head + "Content-Length: 2\r\nContent-Length: 30\r\n\r\n{}" + smuggled);
    INFO(answer);
    CHECK(status_of(answer) == 400);
    CHECK(error_of(answer)["message"].as_string() == "the request has 2 Content-Length headers; send one");
    CHECK(count_of(answer, "HTTP/1.1 ") == 1);
    CHECK(answer.find("Connection: close") != std::string::npos);
  }
  SECTION("Transfer-Encoding and Content-Length together") {
    std::string answer = raw_until_close(server.port(), head + "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n"
                                                               "0\r\n\r\n" + smuggled);
    INFO(answer);
    CHECK(status_of(answer) == 400);
    CHECK(error_of(answer)["message"].as_string().find("both Transfer-Encoding and Content-Length") != std::string::npos);
    CHECK(count_of(answer, "HTTP/1.1 ") == 1);
  }
  SECTION("a transfer coding other than chunked: 501") {
    std::string answer = raw_until_close(server.port(), head + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
    INFO(answer);
    CHECK(status_of(answer) == 501);
    CHECK(error_of(answer)["code"].as_string() == "unimplemented");
  }
  SECTION("a body on a GET would be read as the next request") {
    std::string answer = raw_until_close(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                                                            std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled);
    INFO(answer);
    CHECK(status_of(answer) == 400);
    CHECK(error_of(answer)["message"].as_string() == "a GET request must not have a body");
    CHECK(count_of(answer, "HTTP/1.1 ") == 1);
  }
  SECTION("an HTTP/1.1 request without a Host, or with two (RFC 9112 §3.2)") {
    std::string answer = raw_until_close(server.port(), "GET /health HTTP/1.1\r\n\r\n");
    INFO(answer);
    CHECK(status_of(answer) == 400);
    CHECK(error_of(answer)["message"].as_string() == "an HTTP/1.1 request must have a Host header");
    answer = raw_until_close(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n");
    CHECK(status_of(answer) == 400);
    CHECK(error_of(answer)["message"].as_string() == "the request has 2 Host headers; send one");
    // HTTP/1.0 has no Host requirement.
    CHECK(status_of(raw_until_close(server.port(), "GET /health HTTP/1.0\r\n\r\n")) == 200);
  }
  SECTION("one length, or a zero one on a GET, is fine") {
    CHECK(status_of(raw_exchange(server.port(), head + "Content-Length: 2\r\n\r\n{}")) == 400);  // {} is not a run
    CHECK(status_of(raw_exchange(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")) == 200);
  }
  CHECK(server.client()->Get("/health")->status == 200);
}

TEST_CASE("requests the HTTP parser refuses get a status and message that say why", "[server][hardening]") {
  orch::testing::TestServer server;
  auto error = [&](const std::string& request) {
    std::string answer = raw_until_close(server.port(), request);
    INFO(answer.substr(0, 400));
    CHECK(count_of(answer, "HTTP/1.1 ") == 1);
    return std::make_pair(status_of(answer), error_of(answer));
  };
  SECTION("a header line over the parser's 8 KiB: 431, not a malformed request") {
    auto [status, e] = error("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + std::string(9000, 'a') +
                             "\r\nX-After: 1\r\n\r\n");
    CHECK(status == 431);
    CHECK(e["code"].as_string() == "headers_too_large");
    CHECK(e["message"].as_string().find("8192 bytes") != std::string::npos);
  }
  SECTION("a request line that is not one") {
    for (const char* line : {"HELLO\r\n", "get /health HTTP/1.1\r\n", "GET /health HTTP/9.9\r\n",
                                   "GET /health\r\n"}) {
      auto [status, e] = error(std::string(line) + "Host: 127.0.0.1\r\n\r\n");
      CHECK(status == 400);
      CHECK(e["code"].as_string() == "bad_request");
      CHECK(e["message"].as_string().rfind("malformed HTTP request", 0) == 0);
      CHECK(e["message"].as_string().find("Content-Length") == std::string::npos);
    }
  }
  SECTION("a request line over 8 KiB: 414 uri_too_long") {
    // (The line was read whole: the connection stays usable.)
    std::string answer = raw_exchange(server.port(), "GET /runs?q=" + std::string(9000, 'q') +
                                                         " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    CHECK(status_of(answer) == 414);
    CHECK(error_of(answer)["code"].as_string() == "uri_too_long");
  }
  CHECK(server.client()->Get("/health")->status == 200);
}

TEST_CASE("a request id with control characters is replaced and not echoed", "[server][hardening]") {
  orch::testing::TestServer server;
  auto c = server.client();
  auto plain = c->Get("/health", {{"X-Request-Id", "req-123 abc"}});
  CHECK(plain->get_header_value("X-Request-Id") == "req-123 abc");
  // httplib percent-decodes header values: %0D%0A arrives as CR LF.
  for (const std::string& id : {std::string("a%0D%0AX-Injected: 1"), std::string("a\x01" "b"), std::string("caf\xc3\xa9"),
                               std::string(300, 'r')}) {
    std::string answer = raw_exchange(server.port(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: " + id +
                                                         "\r\n\r\n");
    INFO(answer);
    CHECK(status_of(answer) == 200);
    CHECK(answer.find("X-Injected") == std::string::npos);
    size_t at = answer.find("X-Request-Id: ");
    REQUIRE(at != std::string::npos);
    const std::string echoed = answer.substr(at + 14, answer.find("\r\n", at) - at - 14);
    CHECK(echoed.size() == 36);  // a fresh UUID
  }
}

TEST_CASE("log lines are ASCII: control and non-ASCII bytes are escaped", "[server][log]") {
  using orch::server::LogFormat;
  using orch::server::LogLevel;
  // DEL, U+009B (a C1 control a terminal takes for CSI), é, an emoji, a byte that is not UTF-8.
  const std::string hostile = "a\x7f" "b\xc2\x9b" "c\xc3\xa9" "d\xf0\x9f\x98\x80" "e\xff";
  const std::string text = orch::server::format_log_line(LogFormat::kText, 0, LogLevel::kInfo, "http.request",
                                                         {{"request_id", hostile}});
  CHECK(text == R"(1970-01-01T00:00:00.000Z info http.request request_id="a\u007fb\u009bc\u00e9d\ud83d\ude00e\ufffd")");
  const std::string json = orch::server::format_log_line(LogFormat::kJson, 0, LogLevel::kInfo, "x", {{"id", hostile}});
  CHECK(json == R"({"ts":"1970-01-01T00:00:00.000Z","level":"info","msg":"x","id":"a\u007fb\u009bc\u00e9d\ud83d\ude00e\ufffd"})");
  auto back = orch::parse_json(json);
  REQUIRE(back.ok());
  CHECK((*back)["id"].as_string() == "a\x7f" "b\xc2\x9b" "c\xc3\xa9" "d\xf0\x9f\x98\x80" "e\xef\xbf\xbd");
  bool ascii = true;
  for (unsigned char ch : text + json) ascii = ascii && ch >= 0x20 && ch < 0x7f;
  CHECK(ascii);
}
