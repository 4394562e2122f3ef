// SPDX-License-Identifier: MIT
#include "support/faulty_worker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include "orch/value.h"

namespace orch::testing {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Writes all of `data`; false when the peer is gone.
bool send_all(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string head(int status, const char* reason, size_t content_length) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(content_length) + "\r\n\r\n";
}

// FakeWorker's webhook reply: the prompt (the request's "message") echoed.
std::string echo_reply(const std::string& request_body) {
  std::string prompt;
  if (auto parsed = parse_json(request_body); parsed.ok() && (*parsed)["message"].is_string()) {
    prompt = (*parsed)["message"].as_string();
  }
  return Value::object({{"response", "echo: " + prompt}}).to_json();
}

}  // namespace

const char* fault_name(Fault fault) {
  switch (fault) {
    case Fault::kOk: return "ok";
    case Fault::kHttp500: return "http_500";
    case Fault::kHttp503: return "http_503";
    case Fault::kHang: return "hang";
    case Fault::kMalformed: return "malformed";
    case Fault::kTruncated: return "truncated";
    case Fault::kTrickle: return "trickle";
    case Fault::kSlowTrickle: return "slow_trickle";
    case Fault::kReset: return "reset";
    case Fault::kClose: return "close";
  }
  return "?";
}

FaultyWorker::FaultyWorker(FaultyWorkerOptions options)
    : options_(options),
      rng_(options.seed),
      draw_(options.weights.begin(), options.weights.end()) {
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) throw std::runtime_error("faulty worker: pipe failed");
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 128) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
    throw std::runtime_error("faulty worker: cannot listen on a loopback port");
  }
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { accept_loop(); });
}

FaultyWorker::~FaultyWorker() { stop(); }

std::string FaultyWorker::url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/webhook"; }

void FaultyWorker::push(Fault fault) {
  std::lock_guard<std::mutex> lock(mu_);
  script_.push_back(fault);
}

uint64_t FaultyWorker::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

uint64_t FaultyWorker::injected(Fault fault) const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_[static_cast<size_t>(fault)];
}

std::array<uint64_t, kFaultKinds> FaultyWorker::injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_;
}

int FaultyWorker::open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

bool FaultyWorker::wait_for_calls(uint64_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return calls_ >= n; });
}

bool FaultyWorker::wait_for_open_at_most(int n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return open_ <= n; });
}

void FaultyWorker::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // Never read: the pipe stays readable and wakes every poll() from now on.
  ssize_t n = ::write(stop_pipe_[1], "x", 1);
  (void)n;
  if (accept_thread_.joinable()) accept_thread_.join();
  for (Connection& c : connections_) c.thread.join();  // the accept thread is gone: ours now
  connections_.clear();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

FaultyWorker::Wait FaultyWorker::wait_readable(int fd, int64_t timeout_ms) const {
  pollfd fds[2] = {{stop_pipe_[0], POLLIN, 0}, {fd, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, fd < 0 ? 1 : 2, static_cast<int>(timeout_ms));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[0].revents != 0) return Wait::kStopped;
    return n == 0 ? Wait::kTimeout : Wait::kReady;  // POLLHUP / POLLERR count as ready: recv() tells
  }
}

bool FaultyWorker::pause(int64_t ms) const { return wait_readable(-1, ms) == Wait::kTimeout; }

void FaultyWorker::accept_loop() {
  while (wait_readable(listen_fd_, -1) == Wait::kReady) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++open_;
    }
    // Join the threads of connections that ended meanwhile.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        it->thread.join();
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    Connection& c = connections_.emplace_back();
    c.thread = std::thread([this, fd, &c] {
      serve(fd);
      c.done = true;
    });
  }
}

void FaultyWorker::serve(int fd) {
  std::string buffer;
  bool keep_open = true;
  while (keep_open) {
    // Headers: up to the blank line. An idle kept-alive connection times out.
    size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (buffer.size() > kMaxHeaderBytes || wait_readable(fd, options_.keep_alive_ms) != Wait::kReady) {
        header_end = std::string::npos;
        break;
      }
      char chunk[4096];
      ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) break;  // the client closed (or reset) the connection
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (header_end == std::string::npos) break;
    const std::string headers = lower(buffer.substr(0, header_end));
    size_t content_length = 0;
    if (size_t at = headers.find("\r\ncontent-length:"); at != std::string::npos) {
      content_length = std::strtoul(headers.c_str() + at + 17, nullptr, 10);
    }
    const bool client_closes = headers.find("\r\nconnection: close") != std::string::npos;
    buffer.erase(0, header_end + 4);
    while (buffer.size() < content_length) {
      if (wait_readable(fd, options_.keep_alive_ms) != Wait::kReady) break;
      char chunk[4096];
      ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (buffer.size() < content_length) break;
    const std::string body = buffer.substr(0, content_length);
    buffer.erase(0, content_length);

    const Fault fault = next_fault();
    keep_open = answer(fd, fault, body) && !client_closes;
    if (fault == Fault::kReset) fd = -1;  // answer() closed it
  }
  if (fd >= 0) ::close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  --open_;
  cv_.notify_all();
}

Fault FaultyWorker::next_fault() {
  std::lock_guard<std::mutex> lock(mu_);
  Fault fault;
  if (!script_.empty()) {
    fault = script_.front();
    script_.pop_front();
  } else {
    fault = static_cast<Fault>(draw_(rng_));
  }
  ++injected_[static_cast<size_t>(fault)];
  ++calls_;
  cv_.notify_all();
  return fault;
}

bool FaultyWorker::answer(int fd, Fault fault, const std::string& request_body) {
  const std::string reply = echo_reply(request_body);
  switch (fault) {
    case Fault::kOk:
      return send_all(fd, head(200, "OK", reply.size()) + reply);
    case Fault::kHttp500:
    case Fault::kHttp503: {
      const int status = fault == Fault::kHttp500 ? 500 : 503;
      const std::string error =
          R"({"error":{"message":"injected fault: HTTP )" + std::to_string(status) + R"("}})";
      return send_all(fd, head(status, status == 500 ? "Internal Server Error" : "Service Unavailable",
                               error.size()) +
                              error);
    }
    case Fault::kHang:
      // Until the client closes the connection (or sends anything) or stop().
      wait_readable(fd, -1);
      return false;
    case Fault::kMalformed: {
      const std::string broken = reply.substr(0, reply.size() / 2);
      return send_all(fd, head(200, "OK", broken.size()) + broken);
    }
    case Fault::kTruncated:
      send_all(fd, head(200, "OK", reply.size() + 64) + reply);
      return false;
    case Fault::kTrickle:
    case Fault::kSlowTrickle: {
      const bool slow = fault == Fault::kSlowTrickle;
      const size_t chunk = slow ? 1 : std::max<size_t>(1, options_.trickle_chunk);
      const int64_t pause_ms = slow ? options_.slow_trickle_pause_ms : options_.trickle_pause_ms;
      // JSON allows leading whitespace: the slow trickle pads the reply with it.
      const size_t padding =
          slow ? static_cast<size_t>(options_.slow_trickle_ms / std::max<int64_t>(1, pause_ms)) : 0;
      const std::string body = std::string(padding, ' ') + reply;
      if (!send_all(fd, head(200, "OK", body.size()))) return false;
      for (size_t at = 0; at < body.size(); at += chunk) {
        // A client that gave up shows up as a failed send, a pause or two later.
        if (!pause(pause_ms) || !send_all(fd, body.substr(at, chunk))) return false;
      }
      return true;
    }
    case Fault::kReset: {
      linger hard{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
      ::close(fd);
      return false;
    }
    case Fault::kClose:
      return false;
  }
  return false;
}

}  // namespace orch::testing
