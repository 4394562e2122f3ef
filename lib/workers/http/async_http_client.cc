// SPDX-License-Identifier: MIT
#include "workers/http/async_http_client.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <asio/bind_executor.hpp>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>

#include "orch/thread_guard.h"
#include "orch/url.h"
#include "workers/call_pool.h"

namespace orch::internal {
namespace {

using std::chrono::milliseconds;
using tcp = asio::ip::tcp;

constexpr milliseconds kMaxConnectTimeout{30000};
// A pooled connection that breaks this soon was most likely closed by the
// worker before our request reached it: worth one more try on a new one.
constexpr milliseconds kStaleConnectionWindow{50};
constexpr size_t kResolverThreads = 4;
constexpr size_t kReadChunk = 16 * 1024;

// This thread's client loop, if it is one (see the destructor).
thread_local const void* t_loop_of = nullptr;

// False when the worker closed the idle connection, or sent bytes no request
// asked for, or the socket failed: it must not carry a call.
bool still_open(tcp::socket& socket) {
  char byte;
  const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

bool has_line_break(const std::string& text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos;
}

std::string host_header(const Url& url) {
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != 80) host += ":" + std::to_string(url.port);
  return host;
}

}  // namespace

struct AsyncHttpClient::Impl {
  explicit Impl(AsyncHttpClientOptions o)
      : options(std::move(o)),
        system_clock(options.clock == Clock::system()),
        work(asio::make_work_guard(io)),
        resolvers(kResolverThreads) {}

  // The pooled connection of `origin` most recently put back that is still
  // open, or false.
  bool take_idle(const std::string& origin, tcp::socket* out) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = idle.find(origin);
    if (it == idle.end()) return false;
    auto& sockets = it->second;
    while (!sockets.empty()) {
      tcp::socket socket = std::move(sockets.back());
      sockets.pop_back();
      --idle_count;
      if (still_open(socket)) {
        *out = std::move(socket);
        return true;
      }
      std::error_code ignored;
      socket.close(ignored);
    }
    return false;
  }

  void give_idle(const std::string& origin, tcp::socket socket) {
    std::lock_guard<std::mutex> lock(mu);
    auto& sockets = idle[origin];
    if (shutting_down || sockets.size() >= options.max_idle_per_origin) {
      std::error_code ignored;
      socket.close(ignored);
      return;
    }
    sockets.push_back(std::move(socket));
    ++idle_count;
  }

  AsyncHttpClientOptions options;
  const bool system_clock;  // deadlines then need the asio timer only
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;

  mutable std::mutex mu;
  bool shutting_down = false;
  std::unordered_map<const Call*, std::weak_ptr<Call>> calls;  // in flight
  std::unordered_map<std::string, const Call*> by_id;          // the cancellable ones
  std::map<std::string, std::vector<tcp::socket>> idle;        // by origin
  size_t idle_count = 0;
  std::atomic<uint64_t> opened{0};
  std::atomic<uint64_t> reused{0};
  std::vector<std::thread> threads;

  // Last: joined first, while the loop can still take what its tasks post.
  CallPool resolvers;  // host names: the system resolver blocks
};

// One call: its steps run on its strand, each when its socket or a timer is
// ready. Kept alive by the handlers it has pending.
struct AsyncHttpClient::Call : std::enable_shared_from_this<AsyncHttpClient::Call> {
  Call(std::shared_ptr<Impl> owner, HttpRequestSpec request_spec, Url parsed, Done on_done)
      : impl(std::move(owner)),
        spec(std::move(request_spec)),
        url(std::move(parsed)),
        origin(url.origin()),
        done(std::move(on_done)),
        strand(asio::make_strand(impl->io)),
        socket(impl->io),
        deadline_timer(impl->io),
        connect_timer(impl->io),
        wait_timer(impl->io),
        parser(impl->options.limits, spec.method == "HEAD") {}

  template <class Handler>
  auto on_strand(Handler&& handler) {
    return asio::bind_executor(strand, std::forward<Handler>(handler));
  }

  // On the strand: the first step.
  void start(milliseconds delay) {
    if (finished) return;  // cancelled before it began
    remaining = std::chrono::duration_cast<std::chrono::microseconds>(spec.deadline - impl->options.clock->steady_now());
    if (remaining.count() <= 0) {
      finish(Status::deadline_exceeded("deadline passed before the worker was called"));
      return;
    }
    std::string bad = build_request();
    if (!bad.empty()) {
      finish(Status::invalid_argument(bad));
      return;
    }
    auto self = shared_from_this();
    deadline_timer.expires_after(remaining);
    deadline_timer.async_wait(on_strand([self](std::error_code ec) {
      if (!ec) self->on_deadline();
    }));
    if (!impl->system_clock) {
      // A test clock moves on its own: its deadline counts too.
      std::weak_ptr<Call> weak = self;
      clock_timer = impl->options.clock->call_at(spec.deadline, [weak] {
        if (auto call = weak.lock()) asio::post(call->strand, [call] { call->on_deadline(); });
      });
    }
    if (delay.count() > 0) {
      wait_timer.expires_after(delay);
      wait_timer.async_wait(on_strand([self](std::error_code ec) {
        if (!ec && !self->finished) self->begin(false);
      }));
      return;
    }
    begin(false);
  }

  // Returns what is wrong with the request, or "".
  std::string build_request() {
    if (has_line_break(spec.bearer_token)) return "worker token must not contain CR, LF or NUL";
    for (const auto& [name, value] : spec.headers) {
      if (has_line_break(name) || has_line_break(value)) return "header " + name + " must not contain CR, LF or NUL";
    }
    request.reserve(256 + spec.body.size());
    request.append(spec.method).append(" ").append(url.target).append(" HTTP/1.1\r\nHost: ");
    request.append(host_header(url)).append("\r\nUser-Agent: orch\r\nAccept: */*\r\n");
    if (!spec.bearer_token.empty()) request.append("Authorization: Bearer ").append(spec.bearer_token).append("\r\n");
    for (const auto& [name, value] : spec.headers) request.append(name).append(": ").append(value).append("\r\n");
    if (spec.method != "GET" && spec.method != "HEAD") {
      request.append("Content-Type: application/json\r\nContent-Length: ")
          .append(std::to_string(spec.body.size()))
          .append("\r\n\r\n")
          .append(spec.body);
    } else {
      request.append("\r\n");
    }
    return "";
  }

  // Sends the request on a pooled connection, else on a new one.
  void begin(bool fresh) {
    started = std::chrono::steady_clock::now();
    if (!fresh && impl->take_idle(origin, &socket)) {
      reused_connection = true;
      impl->reused.fetch_add(1, std::memory_order_relaxed);
      write();
      return;
    }
    reused_connection = false;
    Status allowed = check_host(impl->options.policy, url.host);
    if (!allowed.ok()) {
      finish(Status::invalid_argument(allowed.message()));
      return;
    }
    std::error_code ec;
    asio::ip::address address = asio::ip::make_address(url.host, ec);
    if (!ec) {
      connect({tcp::endpoint(address, static_cast<unsigned short>(url.port))});
      return;
    }
    // A host name: resolve it (and check where it points) off the loop.
    auto self = shared_from_this();
    impl->resolvers.post([self, guard = asio::make_work_guard(impl->io)] {
      Status policy = check_resolved_host(self->impl->options.policy, self->url.host);
      std::vector<tcp::endpoint> endpoints;
      std::error_code resolve_error;
      if (policy.ok()) {
        tcp::resolver resolver(self->impl->io);
        for (const auto& entry : resolver.resolve(self->url.host, std::to_string(self->url.port), resolve_error)) {
          endpoints.push_back(entry.endpoint());
        }
      }
      asio::post(self->strand, [self, policy, endpoints, resolve_error] {
        if (self->finished) return;
        if (!policy.ok()) {
          self->finish(Status::invalid_argument(policy.message()));
        } else if (resolve_error || endpoints.empty()) {
          self->finish(self->failed("could not connect"));
        } else {
          self->connect(endpoints);
        }
      });
    });
  }

  void connect(std::vector<tcp::endpoint> endpoints) {
    auto self = shared_from_this();
    connecting = true;
    if (remaining > kMaxConnectTimeout) {
      connect_timer.expires_after(kMaxConnectTimeout);
      connect_timer.async_wait(on_strand([self](std::error_code ec) {
        if (ec || self->finished || !self->connecting) return;
        self->finish(self->failed("connection timed out"));
      }));
    }
    asio::async_connect(socket, endpoints, on_strand([self](std::error_code ec, const tcp::endpoint&) {
      if (self->finished) return;
      self->connecting = false;
      self->connect_timer.cancel();
      if (ec) {
        self->finish(self->failed("could not connect"));
        return;
      }
      self->impl->opened.fetch_add(1, std::memory_order_relaxed);
      std::error_code ignored;
      self->socket.set_option(tcp::no_delay(true), ignored);
      self->write();
    }));
  }

  void write() {
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(request), on_strand([self](std::error_code ec, size_t) {
      if (self->finished) return;
      if (ec) {
        // Not delivered: safe to send again, once, when the pooled
        // connection was just found closed.
        if (self->may_retry()) return self->retry();
        self->finish(self->failed("connection lost while sending the request"));
        return;
      }
      self->read();
    }));
  }

  void read() {
    auto self = shared_from_this();
    socket.async_read_some(asio::buffer(buffer), on_strand([self](std::error_code ec, size_t n) {
      if (self->finished) return;
      if (ec) return self->on_read_end(ec);
      const std::string_view bytes(self->buffer.data(), n);
      const size_t used = self->parser.feed(bytes);
      switch (self->parser.state()) {
        case HttpResponseParser::State::kReading: return self->read();
        case HttpResponseParser::State::kDone: return self->complete(used == n);
        case HttpResponseParser::State::kError: return self->finish(self->parse_error());
      }
    }));
  }

  void on_read_end(std::error_code ec) {
    if (ec == asio::error::eof && parser.finish_at_eof()) {
      complete(false);
      return;
    }
    // A GET that got nothing on a connection that was just pooled is sent
    // again; a POST may have been read by the worker (its retry policy decides).
    if (parser.bytes_seen() == 0 && spec.method == "GET" && may_retry()) {
      retry();
      return;
    }
    finish(failed("connection lost while reading the response"));
  }

  bool may_retry() const {
    return reused_connection && !retried && std::chrono::steady_clock::now() - started < kStaleConnectionWindow;
  }

  void retry() {
    retried = true;
    std::error_code ignored;
    socket.close(ignored);
    socket = tcp::socket(impl->io);
    parser = HttpResponseParser(impl->options.limits, spec.method == "HEAD");
    begin(true);
  }

  // `clean`: the response ended exactly where the bytes read did.
  void complete(bool clean) {
    HttpResponse response = parser.take();
    if (clean && parser.keep_alive()) impl->give_idle(origin, std::move(socket));
    finish(std::move(response));
  }

  Status failed(const std::string& what) const {
    return Status::unavailable("HTTP request failed: " + what + " (" + origin + ")");
  }

  Status parse_error() const {
    if (parser.error() == HttpResponseParser::Error::kTooLarge) {
      return Status::resource_exhausted("worker reply too large: " + parser.error_text() + " (" + origin + ")");
    }
    return failed("malformed response: " + parser.error_text());
  }

  void on_deadline() {
    if (finished) return;
    // Rounded up: the deadline was set a moment before the call began, so a
    // 1500 ms timeout leaves 1499.x ms here and should still read 1500.
    finish(Status::deadline_exceeded("worker did not answer within " +
                                     std::to_string(std::chrono::ceil<milliseconds>(remaining).count()) + " ms"));
  }

  // Ends the call once: stops its timers, closes its socket unless it went
  // back to the pool, and reports.
  void finish(Result<HttpResponse> result) {
    if (finished) return;
    finished = true;
    deadline_timer.cancel();
    connect_timer.cancel();
    wait_timer.cancel();
    if (clock_timer != 0) impl->options.clock->cancel(clock_timer);
    std::error_code ignored;
    if (socket.is_open()) socket.close(ignored);
    {
      std::lock_guard<std::mutex> lock(impl->mu);
      impl->calls.erase(this);
      auto it = by_id_entry();
      if (it != impl->by_id.end()) impl->by_id.erase(it);
    }
    Done report = std::move(done);
    done = nullptr;
    run_guarded("http worker reply", [&] { report(std::move(result)); });
  }

  // This call's entry in by_id (under impl->mu), or end().
  std::unordered_map<std::string, const Call*>::iterator by_id_entry() {
    if (spec.call_id.empty()) return impl->by_id.end();
    auto it = impl->by_id.find(spec.call_id);
    return it != impl->by_id.end() && it->second == this ? it : impl->by_id.end();
  }

  std::shared_ptr<Impl> impl;
  HttpRequestSpec spec;
  Url url;
  std::string origin;
  Done done;
  asio::strand<asio::io_context::executor_type> strand;
  tcp::socket socket;
  asio::steady_timer deadline_timer;
  asio::steady_timer connect_timer;
  asio::steady_timer wait_timer;
  Clock::TimerId clock_timer = 0;
  HttpResponseParser parser;
  std::string request;
  std::array<char, kReadChunk> buffer;
  std::chrono::microseconds remaining{0};
  std::chrono::steady_clock::time_point started;
  bool finished = false;
  bool connecting = false;
  bool reused_connection = false;
  bool retried = false;
};

AsyncHttpClient::AsyncHttpClient(AsyncHttpClientOptions options) {
  if (!options.clock) options.clock = Clock::system();
  clock_ = options.clock;
  const size_t threads = std::max<size_t>(1, options.threads);
  impl_ = std::make_shared<Impl>(std::move(options));
  for (size_t i = 0; i < threads; ++i) {
    impl_->threads.emplace_back([impl = impl_] {
      t_loop_of = impl.get();
      // A handler must not throw; if one does, the loop goes on.
      while (!run_guarded("http worker loop", [&] { impl->io.run(); })) {
      }
    });
  }
}

AsyncHttpClient::~AsyncHttpClient() {
  std::vector<std::shared_ptr<Call>> running;
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->shutting_down = true;
    for (auto& [ptr, weak] : impl_->calls) {
      if (auto call = weak.lock()) running.push_back(std::move(call));
    }
    for (auto& [origin, sockets] : impl_->idle) {
      for (tcp::socket& socket : sockets) {
        std::error_code ignored;
        socket.close(ignored);
      }
    }
    impl_->idle.clear();
    impl_->idle_count = 0;
    threads.swap(impl_->threads);
  }
  for (auto& call : running) {
    asio::post(call->strand, [call] { call->finish(Status::cancelled("call cancelled")); });
  }
  running.clear();
  impl_->work.reset();  // the loop ends once the cancelled calls have unwound
  // From a reply on one of the loop's threads, joining would wait for this
  // very reply: let the threads finish on their own (they hold the state).
  const bool on_loop = t_loop_of == impl_.get();
  for (std::thread& t : threads) {
    if (on_loop) {
      t.detach();
    } else {
      t.join();
    }
  }
}

void AsyncHttpClient::send(HttpRequestSpec spec, Done done, milliseconds delay) {
  Result<Url> url = parse_http_url(spec.url);
  if (!url.ok()) {
    done(url.status());
    return;
  }
  if (url->scheme != "http") {
    done(Status::invalid_argument("the event-driven client speaks http:// only: " + spec.url));
    return;
  }
  auto call = std::make_shared<Call>(impl_, std::move(spec), std::move(url).value(), std::move(done));
  bool refused = false;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    refused = impl_->shutting_down;
    if (!refused) {
      impl_->calls.emplace(call.get(), call);
      if (!call->spec.call_id.empty()) impl_->by_id[call->spec.call_id] = call.get();
    }
  }
  if (refused) {  // outside the lock: `done` may send again
    call->finished = true;
    Done report = std::move(call->done);
    report(Status::cancelled("call cancelled"));
    return;
  }
  asio::post(call->strand, [call, delay] { call->start(delay); });
}

void AsyncHttpClient::cancel(const std::string& call_id) {
  std::shared_ptr<Call> call;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->by_id.find(call_id);
    if (it == impl_->by_id.end()) return;
    auto found = impl_->calls.find(it->second);
    if (found != impl_->calls.end()) call = found->second.lock();
  }
  if (call) asio::post(call->strand, [call] { call->finish(Status::cancelled("call cancelled")); });
}

AsyncHttpClient::Stats AsyncHttpClient::stats() const {
  Stats stats;
  stats.connections_opened = impl_->opened.load();
  stats.connections_reused = impl_->reused.load();
  std::lock_guard<std::mutex> lock(impl_->mu);
  stats.idle = impl_->idle_count;
  stats.in_flight = impl_->calls.size();
  return stats;
}

}  // namespace orch::internal
