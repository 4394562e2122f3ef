// SPDX-License-Identifier: MIT
// RedisClient: a blocking hiredis connection with values copied out of replies.
#include "workers/async/redis_client.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>

namespace orch::internal {
namespace {

struct timeval to_timeval(std::chrono::milliseconds ms) {
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

RedisValue convert(const redisReply* reply) {
  RedisValue v;
  switch (reply->type) {
    case REDIS_REPLY_STRING:
      v.type = RedisValue::Type::kString;
      v.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = RedisValue::Type::kStatus;
      v.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = RedisValue::Type::kError;
      v.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = RedisValue::Type::kInteger;
      v.integer = reply->integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = RedisValue::Type::kArray;
      v.elements.reserve(reply->elements);
      for (size_t i = 0; i < reply->elements; ++i) v.elements.push_back(convert(reply->element[i]));
      break;
    default:
      v.type = RedisValue::Type::kNil;
      break;
  }
  return v;
}

}  // namespace

RedisClient::RedisClient(redisContext* context) : context_(context), fd_(context->fd) {}

RedisClient::~RedisClient() { redisFree(context_); }

Result<std::unique_ptr<RedisClient>> RedisClient::connect(const std::string& host, int port,
                                                          std::chrono::milliseconds timeout,
                                                          std::chrono::milliseconds io_timeout) {
  const std::string where = host + ":" + std::to_string(port);
  redisContext* context = redisConnectWithTimeout(host.c_str(), port, to_timeval(timeout));
  if (!context) return Status::unavailable("redis: cannot connect to " + where + ": out of memory");
  if (context->err) {
    std::string error = context->errstr;
    redisFree(context);
    return Status::unavailable("redis: cannot connect to " + where + ": " + error);
  }
  if (redisSetTimeout(context, to_timeval(io_timeout)) != REDIS_OK) {
    redisFree(context);
    return Status::unavailable("redis: cannot set the socket timeout for " + where);
  }
  (void)redisEnableKeepAlive(context);
  return std::unique_ptr<RedisClient>(new RedisClient(context));
}

Status RedisClient::io_error(const char* what) {
  broken_ = true;
  std::string detail = context_->err ? context_->errstr : "connection closed";
  return Status::unavailable(std::string("redis: ") + what + " failed: " + detail);
}

Result<RedisValue> RedisClient::command(const std::vector<std::string>& args) {
  append(args);
  return read();
}

void RedisClient::append(const std::vector<std::string>& args) {
  if (broken_) return;
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(args.size()), argv.data(), lengths.data()) != REDIS_OK) {
    broken_ = true;
  }
}

Result<RedisValue> RedisClient::read() {
  if (broken_) return Status::unavailable("redis: connection is broken");
  void* raw = nullptr;
  if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) return io_error("read");
  auto* reply = static_cast<redisReply*>(raw);
  RedisValue value = convert(reply);
  freeReplyObject(reply);
  return value;
}

void RedisClient::interrupt() {
  int fd = fd_.load();
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

SigpipeGuard::SigpipeGuard() {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  was_blocked_ = sigismember(&old, SIGPIPE) == 1;
}

SigpipeGuard::~SigpipeGuard() {
  if (was_blocked_) return;
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  // Consume a SIGPIPE raised while blocked, so unblocking does not deliver it.
  struct timespec zero = {0, 0};
  while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_UNBLOCK, &pipe_set, nullptr);
}

void join_connection_thread(std::thread& thread) {
  if (!thread.joinable()) return;
  if (thread.get_id() == std::this_thread::get_id()) {
    thread.detach();
  } else {
    thread.join();
  }
}

}  // namespace orch::internal
