// SPDX-License-Identifier: MIT
// The event-driven HTTP client of the worker protocols (AsyncHttpClient,
// lib/workers/http/async_http_client.h) and its response parser, against
// real servers on loopback: a raw-socket server scripted per test (for
// replies a server library would not send) and cpp-httplib's server.
//
// No timed assertions: waits are bounded generously and the checks are on
// outcomes and on connection counts.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <list>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/orch.h"
#include "support/fake_workers.h"
#include "support/figures.h"
#include "support/registry.h"
#include "workers/http/async_http_client.h"
#include "workers/http/http_response_parser.h"

using namespace std::chrono_literals;
using orch::Result;
using orch::Status;
using orch::StatusCode;
using orch::internal::AsyncHttpClient;
using orch::internal::AsyncHttpClientOptions;
using orch::internal::HttpRequestSpec;
using orch::internal::HttpResponse;
using orch::internal::HttpResponseLimits;
using orch::internal::HttpResponseParser;

namespace {

constexpr auto kBound = 20s;  // far above what any wait here needs

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

template <class Condition>
bool eventually(Condition condition) {
  const auto until = std::chrono::steady_clock::now() + kBound;
  while (!condition() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
  return condition();
}

// One accepted connection of RawServer, as its script sees it.
class Conn {
 public:
  Conn(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}

  // Reads one request (headers and a Content-Length body); false at EOF.
  bool read_request(std::string* body = nullptr) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return false;
    }
    std::string head = buffer_.substr(0, end);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t length = 0;
    const size_t at = head.find("content-length:");
    if (at != std::string::npos) length = std::stoul(head.substr(at + 15));
    while (buffer_.size() < end + 4 + length) {
      if (!fill()) return false;
    }
    if (body) *body = buffer_.substr(end + 4, length);
    buffer_.erase(0, end + 4 + length);
    ++requests_;
    return true;
  }

  bool send_all(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size() && !stopping_) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return sent == bytes.size();
  }

  // Blocks until the client closes the connection (true) or the server stops.
  bool wait_client_close() {
    char c;
    for (;;) {
      const ssize_t n = ::recv(fd_, &c, 1, 0);
      if (n == 0) return true;
      if (n < 0) return !stopping_;  // a reset is a close too
    }
  }

  const std::atomic<bool>& stopping() const { return stopping_; }
  int requests() const { return requests_; }

 private:
  bool fill() {
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  const std::atomic<bool>& stopping_;
  std::string buffer_;
  int requests_ = 0;
};

// A loopback server on raw sockets: each accepted connection gets a thread
// running `script`, then is closed. Counts connections, and those whose
// script saw the client close them.
class RawServer {
 public:
  using Script = std::function<void(Conn&)>;

  explicit RawServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 512) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~RawServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : threads_) t.join();
  }

  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int accepted() const { return accepted_; }
  int open_connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(open_.size());
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      if (stopping_) {
        ::close(fd);
        break;
      }
      ++accepted_;
      std::lock_guard<std::mutex> lock(mu_);
      open_.insert(fd);
      threads_.emplace_back([this, fd] {
        Conn conn(fd, stopping_);
        script_(conn);
        {
          std::lock_guard<std::mutex> inner(mu_);
          open_.erase(fd);
        }
        ::close(fd);
      });
    }
  }

  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  mutable std::mutex mu_;
  std::set<int> open_;
  std::vector<std::thread> threads_;  // joined after the acceptor
  std::thread acceptor_;
};

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
                        "{\"response\":\"ok\"}";

// Serves requests on a connection with `reply` until the client closes it.
RawServer::Script keep_answering(std::string reply = kOk, std::chrono::milliseconds delay = 0ms) {
  return [reply, delay](Conn& conn) {
    while (conn.read_request()) {
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      if (!conn.send_all(reply)) return;
    }
  };
}

HttpRequestSpec post(const std::string& url, const std::string& call_id = "",
                     std::chrono::milliseconds timeout = 10s) {
  HttpRequestSpec spec;
  spec.url = url;
  spec.body = R"({"message":"hi"})";
  spec.call_id = call_id;
  spec.deadline = std::chrono::steady_clock::now() + timeout;
  return spec;
}

// Sends and waits for the result.
Result<HttpResponse> call(AsyncHttpClient& client, HttpRequestSpec spec) {
  auto promise = std::make_shared<std::promise<Result<HttpResponse>>>();
  auto future = promise->get_future();
  client.send(std::move(spec), [promise](Result<HttpResponse> r) { promise->set_value(std::move(r)); });
  REQUIRE(future.wait_for(kBound) == std::future_status::ready);
  return future.get();
}

AsyncHttpClientOptions small_limits(size_t max_body) {
  AsyncHttpClientOptions options;
  options.limits.max_body_bytes = max_body;
  return options;
}

}  // namespace

TEST_CASE("http client: one kept-alive connection serves sequential calls", "[http_client]") {
  RawServer server(keep_answering());
  AsyncHttpClient client({});
  for (int i = 0; i < 20; ++i) {
    Result<HttpResponse> r = call(client, post(server.url()));
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body == R"({"response":"ok"})");
    REQUIRE(r->header("content-type"));
    CHECK(*r->header("content-type") == "application/json");
  }
  CHECK(server.accepted() == 1);
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().connections_reused == 19);
  CHECK(client.stats().idle == 1);
  CHECK(client.stats().in_flight == 0);
}

TEST_CASE("http client: the request carries method, path, host, token, headers and body", "[http_client]") {
  httplib::Server server;
  std::mutex mu;
  std::vector<httplib::Request> seen;
  std::set<int> remote_ports;
  server.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(req);
    remote_ports.insert(req.remote_port);
    res.set_content(R"({"response":"hello"})", "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { server.listen_after_bind(); });
  REQUIRE(eventually([&] { return server.is_running(); }));

  AsyncHttpClient client({});
  HttpRequestSpec spec = post("http://127.0.0.1:" + std::to_string(port) + "/hook?x=1");
  spec.bearer_token = "s3cret";
  spec.headers.emplace_back("traceparent", "00-abc-def-01");
  for (int i = 0; i < 3; ++i) {
    Result<HttpResponse> r = call(client, spec);
    REQUIRE(r.ok());
    CHECK(r->body == R"({"response":"hello"})");
  }
  server.stop();
  serving.join();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].path == "/hook");
  CHECK(seen[0].get_param_value("x") == "1");
  CHECK(seen[0].get_header_value("Host") == "127.0.0.1:" + std::to_string(port));
  CHECK(seen[0].get_header_value("Authorization") == "Bearer s3cret");
  CHECK(seen[0].get_header_value("traceparent") == "00-abc-def-01");
  CHECK(seen[0].get_header_value("Content-Type") == "application/json");
  CHECK(seen[0].body == R"({"message":"hi"})");
  CHECK(remote_ports.size() == 1);  // cpp-httplib's server keeps it alive too
}

TEST_CASE("http client: a header value with CR or LF is refused before anything is sent", "[http_client]") {
  RawServer server(keep_answering());
  AsyncHttpClient client({});
  HttpRequestSpec spec = post(server.url());
  spec.bearer_token = "x\r\nX-Injected: 1";
  Result<HttpResponse> r = call(client, spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(server.accepted() == 0);
}

TEST_CASE("http client: the deadline fails the call and closes its connection", "[http_client]") {
  std::atomic<int> closed_by_client{0};
  RawServer server([&](Conn& conn) {
    if (!conn.read_request()) return;
    if (conn.wait_client_close()) ++closed_by_client;  // never answers
  });
  AsyncHttpClient client({});
  Result<HttpResponse> r = call(client, post(server.url(), "c1", 200ms));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  INFO(r.status().message());
  // The time left when the call went out: 200 ms, a little less under load.
  const std::string within = "worker did not answer within ";
  const size_t at = r.status().message().find(within);
  REQUIRE(at != std::string::npos);
  const long ms = std::strtol(r.status().message().c_str() + at + within.size(), nullptr, 10);
  CHECK(ms > 0);
  CHECK(ms <= 200);
  CHECK(eventually([&] { return closed_by_client == 1; }));
  CHECK(client.stats().idle == 0);
  CHECK(client.stats().in_flight == 0);
}

TEST_CASE("http client: through the registry a deadline is a retryable failure", "[http_client]") {
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.wait_client_close();
  });
  auto registry = orch::test::builtin_registry();
  orch::WorkerInfo w;
  w.id = "w";
  w.url = server.url();
  w.protocol = "webhook";
  REQUIRE(registry->add_worker(w).ok());
  orch::WorkerRequest req;
  req.call_id = "c1";
  req.node_name = "n";
  req.prompt = "hi";
  req.deadline = std::chrono::steady_clock::now() + 200ms;
  orch::WorkerReply reply = orch::testing::dispatch_and_wait(*registry, req, kBound);
  CHECK(reply.status.code() == StatusCode::kDeadlineExceeded);
  CHECK(reply.retryable);
  CHECK(eventually([&] { return server.open_connections() == 0; }));
}

TEST_CASE("http client: cancel ends a call at once and closes its connection", "[http_client]") {
  std::atomic<int> closed_by_client{0};
  std::atomic<int> requests_read{0};
  RawServer server([&](Conn& conn) {
    if (!conn.read_request()) return;
    ++requests_read;
    if (conn.wait_client_close()) ++closed_by_client;
  });
  AsyncHttpClient client({});
  auto promise = std::make_shared<std::promise<Result<HttpResponse>>>();
  auto future = promise->get_future();
  client.send(post(server.url(), "c7", 60s), [promise](Result<HttpResponse> r) { promise->set_value(std::move(r)); });
  // The request is in (a cancel between the connect and the request's last
  // byte closes a connection the server never read a request from).
  REQUIRE(eventually([&] { return requests_read == 1; }));
  client.cancel("c7");
  REQUIRE(future.wait_for(kBound) == std::future_status::ready);
  Result<HttpResponse> r = future.get();
  CHECK(r.status().code() == StatusCode::kCancelled);
  CHECK(eventually([&] { return closed_by_client == 1; }));
}

TEST_CASE("http client: an endless body is cut off at the size limit", "[http_client]") {
  // Three framings of a body that never ends: to the close, chunked, and a
  // declared length far beyond the limit (refused before the body is read).
  const std::string head = GENERATE(std::string("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
                                    std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                                    std::string("HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n"));
  const bool chunked = contains(head, "chunked");
  std::atomic<int> closed_by_client{0};
  RawServer server([&](Conn& conn) {
    if (!conn.read_request() || !conn.send_all(head)) return;
    const std::string block(64 * 1024, 'x');
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", block.size());
    for (;;) {
      const bool sent = chunked ? conn.send_all(size_line + block + "\r\n") : conn.send_all(block);
      if (!sent) break;  // the client closed it
    }
    if (!conn.stopping()) ++closed_by_client;
  });
  AsyncHttpClient client(small_limits(1024 * 1024));
  Result<HttpResponse> r = call(client, post(server.url()));
  REQUIRE_FALSE(r.ok());
  INFO(r.status().to_string());
  CHECK(r.status().code() == StatusCode::kResourceExhausted);
  CHECK(contains(r.status().message(), "exceeds 1048576 bytes"));
  CHECK(eventually([&] { return closed_by_client == 1; }));
  CHECK(client.stats().idle == 0);
}

TEST_CASE("http client: through the registry an oversized reply fails without a retry", "[http_client]") {
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.send_all("HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n");
    conn.wait_client_close();
  });
  auto registry = orch::test::builtin_registry();
  orch::WorkerInfo w;
  w.id = "w";
  w.url = server.url();
  w.protocol = "webhook";
  REQUIRE(registry->add_worker(w).ok());
  orch::WorkerRequest req;
  req.call_id = "c1";
  req.node_name = "n";
  req.prompt = "hi";
  req.deadline = std::chrono::steady_clock::now() + 10s;
  orch::WorkerReply reply = orch::testing::dispatch_and_wait(*registry, req, kBound);
  CHECK(reply.status.code() == StatusCode::kResourceExhausted);
  CHECK(contains(reply.status.message(), "worker reply too large"));
  CHECK_FALSE(reply.retryable);
}

TEST_CASE("http client: a server that closes mid-response is a lost connection", "[http_client]") {
  const std::string partial = GENERATE(std::string("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"resp"),
                                       std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
                                       std::string("HTTP/1.1 200 OK\r\nContent-Le"), std::string(""));
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.send_all(partial);
  });
  AsyncHttpClient client({});
  Result<HttpResponse> r = call(client, post(server.url()));
  REQUIRE_FALSE(r.ok());
  INFO(r.status().to_string());
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(r.status().message() == "HTTP request failed: connection lost while reading the response (http://127.0.0.1:" +
                                    server.url("").substr(17) + ")");
  CHECK(client.stats().idle == 0);
}

TEST_CASE("http client: a refused connection is 'could not connect'", "[http_client]") {
  int port;
  {
    RawServer gone(keep_answering());
    port = std::stoi(gone.url("").substr(17));
  }
  AsyncHttpClient client({});
  Result<HttpResponse> r = call(client, post("http://127.0.0.1:" + std::to_string(port) + "/hook"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(r.status().message() == "HTTP request failed: could not connect (http://127.0.0.1:" + std::to_string(port) + ")");
}

TEST_CASE("http client: a chunked body in pieces, and the connection is reused after it", "[http_client]") {
  RawServer server([&](Conn& conn) {
    while (conn.read_request()) {
      // Split across writes, with a chunk extension and a trailer.
      if (!conn.send_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")) return;
      std::this_thread::sleep_for(5ms);
      if (!conn.send_all("c;ext=1\r\n{\"response\":")) return;
      std::this_thread::sleep_for(5ms);
      if (!conn.send_all("\r\n5\r\n\"ok\"}\r\n0\r\nX-Trailer: t\r\n\r\n")) return;
    }
  });
  AsyncHttpClient client({});
  for (int i = 0; i < 3; ++i) {
    Result<HttpResponse> r = call(client, post(server.url()));
    REQUIRE(r.ok());
    CHECK(r->body == R"({"response":"ok"})");
  }
  CHECK(server.accepted() == 1);
}

TEST_CASE("http client: Connection close, HTTP/1.0 and a close-delimited body are not reused", "[http_client]") {
  const std::string reply =
      GENERATE(std::string("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"),
               std::string("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
               std::string("HTTP/1.1 200 OK\r\n\r\n{}"));
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.send_all(reply);
    // Closes after one answer whatever the reply said.
  });
  AsyncHttpClient client({});
  for (int i = 0; i < 3; ++i) {
    Result<HttpResponse> r = call(client, post(server.url()));
    REQUIRE(r.ok());
    CHECK(r->body == "{}");
  }
  CHECK(server.accepted() == 3);
  CHECK(client.stats().connections_reused == 0);
}

TEST_CASE("http client: an idle connection the server closed is not used again", "[http_client]") {
  // Answers one request per connection but says nothing about closing it.
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.send_all(kOk);
  });
  AsyncHttpClient client({});
  for (int i = 0; i < 5; ++i) {
    Result<HttpResponse> r = call(client, post(server.url()));
    REQUIRE(r.ok());
    // Let the close reach the client before the next call takes the connection.
    REQUIRE(eventually([&] { return server.open_connections() == 0; }));
    std::this_thread::sleep_for(10ms);
  }
  CHECK(server.accepted() == 5);
}

TEST_CASE("http client: a 3xx is the answer, not followed", "[http_client]") {
  RawServer server(keep_answering("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"));
  AsyncHttpClient client({});
  Result<HttpResponse> r = call(client, post(server.url()));
  REQUIRE(r.ok());
  CHECK(r->status == 302);
  CHECK(server.accepted() == 1);
}

TEST_CASE("http client: a malformed reply fails naming it", "[http_client]") {
  const std::string reply = GENERATE(std::string("garbage\r\n\r\n"), std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
                                     std::string("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}"),
                                     std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
                                     std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.send_all(reply);
    conn.wait_client_close();
  });
  AsyncHttpClient client({});
  Result<HttpResponse> r = call(client, post(server.url()));
  REQUIRE_FALSE(r.ok());
  INFO(r.status().to_string());
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(contains(r.status().message(), "HTTP request failed: malformed response: "));
}

TEST_CASE("http client: 200 calls in flight on a 2-thread loop", "[http_client]") {
  constexpr int kCalls = 200;
  constexpr auto kDelay = 200ms;
  RawServer server(keep_answering(kOk, kDelay));  // a thread per connection
  AsyncHttpClientOptions options;
  options.threads = 2;
  options.max_idle_per_origin = kCalls;
  AsyncHttpClient client(options);

  auto wave = [&](const std::string& label) {
    std::mutex mu;
    std::condition_variable cv;
    int done = 0;
    int ok = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) {
      client.send(post(server.url(), "c" + std::to_string(i)), [&](Result<HttpResponse> r) {
        std::lock_guard<std::mutex> lock(mu);
        ++done;
        if (r.ok() && r->status == 200) ++ok;
        cv.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, kBound, [&] { return done == kCalls; }));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    orch::testing::report_figures("http client", label + ": " + std::to_string(kCalls) + " calls of a " +
                                                     std::to_string(kDelay.count()) + " ms worker on 2 loop threads in " +
                                                     std::to_string(ms) + " ms");
    CHECK(ok == kCalls);
  };
  wave("first wave");
  // Every call had its own connection (none was free while all waited).
  CHECK(server.accepted() == kCalls);
  CHECK(client.stats().connections_opened == static_cast<uint64_t>(kCalls));
  CHECK(client.stats().idle == static_cast<size_t>(kCalls));
  wave("second wave, pooled connections");
  CHECK(server.accepted() == kCalls);  // no new connection
  CHECK(client.stats().connections_reused == static_cast<uint64_t>(kCalls));
  CHECK(client.stats().in_flight == 0);
}

TEST_CASE("http client: destroying the client cancels the calls in flight", "[http_client]") {
  RawServer server([&](Conn& conn) {
    if (conn.read_request()) conn.wait_client_close();
  });
  std::atomic<int> cancelled{0};
  {
    AsyncHttpClient client({});
    for (int i = 0; i < 5; ++i) {
      client.send(post(server.url(), "", 60s), [&](Result<HttpResponse> r) {
        if (r.status().code() == StatusCode::kCancelled) ++cancelled;
      });
    }
    REQUIRE(eventually([&] { return server.accepted() == 5; }));
  }
  CHECK(cancelled == 5);
  CHECK(eventually([&] { return server.open_connections() == 0; }));
}

TEST_CASE("http response parser: interim 1xx skipped, limits on headers", "[http_client]") {
  SECTION("100 Continue before the answer") {
    HttpResponseParser parser;
    const std::string bytes = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
    CHECK(parser.feed(bytes) == bytes.size());
    REQUIRE(parser.state() == HttpResponseParser::State::kDone);
    HttpResponse r = parser.take();
    CHECK(r.status == 201);
    CHECK(r.body == "{}");
  }
  SECTION("bytes past the response are left") {
    HttpResponseParser parser;
    const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1";
    CHECK(parser.feed(bytes) == bytes.size() - 8);
    CHECK(parser.state() == HttpResponseParser::State::kDone);
    CHECK(parser.keep_alive());
  }
  SECTION("headers over the byte limit") {
    HttpResponseLimits limits;
    limits.max_header_bytes = 100;
    HttpResponseParser parser(limits);
    parser.feed("HTTP/1.1 200 OK\r\nX-Long: " + std::string(200, 'a'));
    CHECK(parser.state() == HttpResponseParser::State::kError);
    CHECK(parser.error() == HttpResponseParser::Error::kTooLarge);
  }
  SECTION("too many headers") {
    HttpResponseLimits limits;
    limits.max_header_count = 3;
    HttpResponseParser parser(limits);
    parser.feed("HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n");
    CHECK(parser.error() == HttpResponseParser::Error::kTooLarge);
  }
  SECTION("a 204 has no body, byte by byte") {
    HttpResponseParser parser;
    const std::string bytes = "HTTP/1.1 204 No Content\r\nX-A:  b \r\n\r\n";
    for (char c : bytes) parser.feed(std::string_view(&c, 1));
    REQUIRE(parser.state() == HttpResponseParser::State::kDone);
    HttpResponse r = parser.take();
    REQUIRE(r.header("x-a"));
    CHECK(*r.header("x-a") == "b");
  }
}
