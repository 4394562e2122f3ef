// SPDX-License-Identifier: MIT
//
// RedisClient: one blocking hiredis connection (hiredis 0.14 API), with
// binary-safe argv commands, pipelining and replies copied into plain values.
// After an I/O error the client is broken and must be replaced.
//
// Thread-safety: one thread uses a client; only interrupt() may be called
// from another thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "orch/status.h"

struct redisContext;

namespace orch::internal {

struct RedisValue {
  enum class Type { kNil, kString, kStatus, kError, kInteger, kArray };
  Type type = Type::kNil;
  std::string str;  // string, status and error replies
  long long integer = 0;
  std::vector<RedisValue> elements;

  bool is_error() const { return type == Type::kError; }
  bool is_nil() const { return type == Type::kNil; }
  bool is_array() const { return type == Type::kArray; }
};

class RedisClient {
 public:
  // Connects within `timeout`; `io_timeout` bounds every later read and write.
  // Unavailable "redis: cannot connect to host:port: ...".
  static Result<std::unique_ptr<RedisClient>> connect(const std::string& host, int port,
                                                      std::chrono::milliseconds timeout,
                                                      std::chrono::milliseconds io_timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command and reads its reply. An error reply is a value of type
  // kError; Unavailable on I/O errors (the client is then broken).
  Result<RedisValue> command(const std::vector<std::string>& args);
  // Pipelining: queue commands, then read one reply per command.
  void append(const std::vector<std::string>& args);
  Result<RedisValue> read();

  bool broken() const { return broken_; }
  // Ends a blocking read from another thread (it then fails, and the client is broken).
  void interrupt();

 private:
  explicit RedisClient(redisContext* context);
  Status io_error(const char* what);

  redisContext* context_;
  std::atomic<int> fd_;
  bool broken_ = false;
};

// Blocks SIGPIPE on the calling thread while alive (a write to a socket the
// server closed then fails with EPIPE instead of killing the process), and
// discards a SIGPIPE raised meanwhile.
// Ends a connection thread that owns its state through a shared_ptr: joins
// it, unless this is that thread (a hook stopped its own owner), which is then
// detached and finishes on its own.
void join_connection_thread(std::thread& thread);

class SigpipeGuard {
 public:
  SigpipeGuard();
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  bool was_blocked_ = false;
};

}  // namespace orch::internal
