// SPDX-License-Identifier: MIT
//
// HttpListener: accepts the connections of an httplib::Server with orch's own
// loop, so that a slow or idle client cannot hold the API's threads.
//
// cpp-httplib 0.11 gives every accepted connection a pool thread at once, and
// that thread then waits for the request line and headers with a 5 s timeout
// per read: sixteen clients sending a byte every few seconds stopped the API.
// Here a new connection waits in an epoll set until its first request's
// headers have all arrived (seen with MSG_PEEK, never consumed); only then
// does a thread of the pool serve it, through httplib's own request handling.
// Limits:
//   - each request's headers must arrive within `header_timeout_ms` (408 and
//     the connection closed); later requests on a kept-alive connection are
//     held to it too (a watchdog ends the connection);
//   - at most `max_connections_per_client` connections per remote address
//     (429 and closed);
//   - the pool has `threads` threads; SSE streams are capped below it
//     (ServerConfig::max_sse_clients).
//
// Thread-safety: bind, run and the destructor from one thread; stop() from
// any thread or a signal handler; the request marks from pool threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "orch/status.h"

namespace httplib {
class Server;
}

namespace orch::server {

struct ListenerLimits {
  size_t threads = 64;
  size_t max_connections_per_client = 256;
  int64_t header_timeout_ms = 10000;
  size_t max_header_bytes = 64 * 1024;
};

class HttpListener {
 public:
  HttpListener(httplib::Server& server, ListenerLimits limits);
  ~HttpListener();  // stops, closes every connection, joins the pool
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // Binds `host`:`port` (0: a free port). Unavailable when it cannot.
  Status bind(const std::string& host, int port);
  int port() const { return port_; }
  // Serves until stop().
  void run();
  bool running() const { return running_.load(); }
  // Makes run() return; async-signal-safe. Connections still being served
  // end after their current request.
  void stop();

  // Marks of the request in progress on the calling pool thread: its headers
  // were read (no deadline while it is handled), its response was written
  // (the next request's headers are due within header_timeout_ms).
  static void request_headers_read();
  static void response_written();
  // The socket of the connection the calling pool thread serves, or -1 (not
  // a pool thread).
  static int current_connection_fd();

  // Connections open now (waiting for headers or being served).
  size_t open_connections() const;

  struct Active;  // a connection a pool thread serves (http_listener.cc)

 private:
  struct Pending;
  void accept_ready();
  void peek_ready(int fd);
  void hand_over(int fd);
  void drop_pending(int fd, int status, const char* reason);
  void expire();
  void serve(int fd, std::string peer);
  void release_client(const std::string& peer);

  httplib::Server& server_;
  const ListenerLimits limits_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};

  std::map<int, std::unique_ptr<Pending>> pending_;  // accept loop only
  std::vector<char> peek_buffer_;  // accept loop only: what peek_ready() reads into

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<std::pair<int, std::string>> work_;  // connections whose headers arrived
  std::map<std::string, size_t> per_client_;      // open connections by remote address
  std::vector<Active*> active_;                   // served now
  std::vector<std::thread> pool_;
  bool pool_stop_ = false;
};

}  // namespace orch::server
