// SPDX-License-Identifier: MIT
#include "http/http_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string_view>

namespace orch::server {
namespace {

// httplib 0.11 keeps the two things this listener needs to itself: the
// function that serves one accepted socket (private) and the listening socket
// (protected). An explicit instantiation may name them (C++17
// [temp.explicit]/14), which hands their member pointers out here.
template <typename Tag, typename Tag::type Member>
struct Expose {
  friend typename Tag::type exposed(Tag) { return Member; }
};
struct ServeSocket {
  using type = bool (httplib::Server::*)(socket_t);
  friend type exposed(ServeSocket);
};
template struct Expose<ServeSocket, &httplib::Server::process_and_close_socket>;
struct ListenSocket {
  using type = std::atomic<socket_t> httplib::Server::*;
  friend type exposed(ListenSocket);
};
template struct Expose<ListenSocket, &httplib::Server::svr_sock_>;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string peer_address(const sockaddr_storage& addr) {
  char ip[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, ip, sizeof(ip));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, ip, sizeof(ip));
  }
  return ip;
}

// A short answer to a connection that is refused before httplib sees it.
void answer_and_close(int fd, int status, const char* reason, const std::string& message) {
  std::string body = "{\"error\":{\"code\":\"" + std::string(status == 408 ? "request_timeout" : "too_many_connections") +
                     "\",\"message\":\"" + message + "\"}}";
  std::string response = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)!send(fd, response.data(), response.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  close(fd);
}

// A connection that waits for its first request's headers.
constexpr int kMaxPeeks = 64;  // a client that sends them in more pieces is served by a thread

}  // namespace

struct HttpListener::Pending {
  std::string peer;
  int64_t deadline_ms = 0;
  int peeks = 0;
};

// A connection a pool thread serves; its state is read by the watchdog.
struct HttpListener::Active {
  int fd = -1;
  std::atomic<bool> in_request{false};
  std::atomic<int64_t> waiting_since_ms{0};
  bool cut = false;  // under mu_
};

namespace {
thread_local HttpListener::Active* t_active = nullptr;
}  // namespace

HttpListener::HttpListener(httplib::Server& server, ListenerLimits limits)
    : server_(server), limits_(limits) {}

HttpListener::~HttpListener() {
  stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    pool_stop_ = true;
    for (auto& [fd, peer] : work_) close(fd);
    work_.clear();
  }
  work_cv_.notify_all();
  // Connections still being served end after their current request: httplib
  // serves a socket while the server's listening socket is valid.
  if (listen_fd_ >= 0) {
    (server_.*exposed(ListenSocket{})).store(INVALID_SOCKET);
    close(listen_fd_);
    listen_fd_ = -1;
  }
  {
    // Kept-alive connections waiting for a next request end now, not when
    // their keep-alive timeout runs out.
    std::lock_guard<std::mutex> lock(mu_);
    for (Active* a : active_) {
      if (!a->in_request.load() && !a->cut) {
        a->cut = true;
        shutdown(a->fd, SHUT_RDWR);
      }
    }
  }
  for (std::thread& t : pool_) t.join();
  for (auto& [fd, p] : pending_) close(fd);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status HttpListener::bind(const std::string& host, int port) {
  if (port == 0) {
    port_ = server_.bind_to_any_port(host.c_str());
    if (port_ <= 0) return Status::unavailable("cannot listen on " + host);
  } else {
    if (!server_.bind_to_port(host.c_str(), port)) {
      return Status::unavailable("cannot listen on " + host + ":" + std::to_string(port));
    }
    port_ = port;
  }
  listen_fd_ = (server_.*exposed(ListenSocket{})).load();
  listen(listen_fd_, SOMAXCONN);  // httplib listens with a backlog of 5
  fcntl(listen_fd_, F_SETFL, fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  for (size_t i = 0; i < std::max<size_t>(limits_.threads, 1); ++i) {
    pool_.emplace_back([this] {
      for (;;) {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [this] { return pool_stop_ || !work_.empty(); });
        if (pool_stop_) return;
        auto [fd, peer] = std::move(work_.front());
        work_.pop_front();
        lock.unlock();
        serve(fd, std::move(peer));
      }
    });
  }
  return Status();
}

void HttpListener::stop() {
  stopping_.store(true);
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

void HttpListener::run() {
  running_ = true;
  epoll_event events[64];
  while (!stopping_.load()) {
    int n = epoll_wait(epoll_fd_, events, 64, 250);  // the watchdog's tick
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) continue;
      if (fd == listen_fd_) {
        accept_ready();
      } else {
        peek_ready(fd);
      }
    }
    expire();
  }
  running_ = false;
}

void HttpListener::accept_ready() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: all taken; EMFILE and the like: the next wake-up tries again
    std::string peer = peer_address(addr);
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t& count = per_client_[peer];
      if (limits_.max_connections_per_client > 0 && count >= limits_.max_connections_per_client) {
        if (count == 0) per_client_.erase(peer);
        answer_and_close(fd, 429, "Too Many Requests",
                         "this client has " + std::to_string(limits_.max_connections_per_client) +
                             " connections open already (http.max_connections_per_client)");
        continue;
      }
      ++count;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto p = std::make_unique<Pending>();
    p->peer = std::move(peer);
    p->deadline_ms = now_ms() + limits_.header_timeout_ms;
    epoll_event ev{};
    // Edge-triggered: peeking leaves the bytes where they are, so a level
    // would report the same partial headers again at once.
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    pending_[fd] = std::move(p);
  }
}

void HttpListener::peek_ready(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  Pending& p = *it->second;
  const size_t cap = limits_.max_header_bytes + 4;
  // One buffer for every peek (only the accept thread peeks): a fresh one of
  // max_header_bytes per readiness was an allocation and a memset each.
  if (peek_buffer_.size() < cap) peek_buffer_.resize(cap);
  ssize_t n = recv(fd, peek_buffer_.data(), cap, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    std::string peer = p.peer;
    pending_.erase(it);
    close(fd);
    release_client(peer);
    return;
  }
  if (n < 0) return;
  const std::string_view buf(peek_buffer_.data(), static_cast<size_t>(n));
  // All headers in (or more than a valid header block holds: httplib then
  // answers it), or a client that trickles them: a thread takes over, still
  // held to the deadline by the watchdog.
  if (buf.find("\r\n\r\n") != std::string::npos || static_cast<size_t>(n) >= cap || ++p.peeks >= kMaxPeeks) {
    hand_over(fd);
  }
}

void HttpListener::hand_over(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  auto it = pending_.find(fd);
  std::string peer = std::move(it->second->peer);
  pending_.erase(it);
  // The read and write timeouts httplib sets on the sockets it accepts itself.
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_.emplace_back(fd, std::move(peer));
  }
  work_cv_.notify_one();
}

void HttpListener::drop_pending(int fd, int status, const char* reason) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  auto it = pending_.find(fd);
  std::string peer = std::move(it->second->peer);
  pending_.erase(it);
  answer_and_close(fd, status, reason,
                   "the request headers did not arrive within " + std::to_string(limits_.header_timeout_ms) +
                       " ms (http.header_timeout_ms)");
  release_client(peer);
}

void HttpListener::expire() {
  const int64_t now = now_ms();
  std::vector<int> late;
  for (const auto& [fd, p] : pending_) {
    if (p->deadline_ms <= now) late.push_back(fd);
  }
  for (int fd : late) drop_pending(fd, 408, "Request Timeout");
  // Served connections whose next request's headers are late: reading them
  // fails once the socket is shut down, and the thread is free again.
  std::lock_guard<std::mutex> lock(mu_);
  for (Active* a : active_) {
    if (a->cut || a->in_request.load()) continue;
    if (now - a->waiting_since_ms.load() > limits_.header_timeout_ms) {
      a->cut = true;
      shutdown(a->fd, SHUT_RDWR);
    }
  }
}

void HttpListener::serve(int fd, std::string peer) {
  Active active;
  active.fd = fd;
  active.waiting_since_ms = now_ms();
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_.push_back(&active);
  }
  t_active = &active;
  try {
    (server_.*exposed(ServeSocket{}))(fd);  // serves its requests, then closes it
  } catch (...) {
    // httplib reports handler exceptions itself; nothing else may escape a pool thread.
  }
  t_active = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_.erase(std::find(active_.begin(), active_.end(), &active));
  }
  release_client(peer);
}

void HttpListener::release_client(const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = per_client_.find(peer);
  if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
}

void HttpListener::request_headers_read() {
  if (t_active != nullptr) t_active->in_request.store(true);
}

void HttpListener::response_written() {
  if (t_active == nullptr) return;
  t_active->waiting_since_ms.store(now_ms());
  t_active->in_request.store(false);
}

int HttpListener::current_connection_fd() { return t_active != nullptr ? t_active->fd : -1; }

size_t HttpListener::open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [peer, count] : per_client_) n += count;
  return n;
}

}  // namespace orch::server
