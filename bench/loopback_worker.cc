// SPDX-License-Identifier: MIT
#include "loopback_worker.h"

#include <asio.hpp>

#include <cctype>
#include <cstdlib>

namespace orch::bench {
namespace {

constexpr char kAnswer[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"response\":\"ok\"}";

// The Content-Length of a request head (0 when absent).
size_t content_length(const std::string& head) {
  static const std::string kName = "content-length:";
  for (size_t line = 0; line < head.size();) {
    size_t end = head.find("\r\n", line);
    if (end == std::string::npos) end = head.size();
    if (end - line > kName.size()) {
      bool match = true;
      for (size_t i = 0; i < kName.size() && match; ++i) {
        match = std::tolower(static_cast<unsigned char>(head[line + i])) == kName[i];
      }
      if (match) return std::strtoul(head.c_str() + line + kName.size(), nullptr, 10);
    }
    line = end + 2;
  }
  return 0;
}

}  // namespace

struct LoopbackWorker::Loop {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
  std::chrono::milliseconds delay{0};
  OnRequest on_request;

  // One keep-alive connection: read a request, answer it, read the next.
  struct Session : std::enable_shared_from_this<Session> {
    Session(Loop& owner, asio::ip::tcp::socket connection)
        : loop(owner), socket(std::move(connection)), timer(owner.io) {}

    void read_head() {
      asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n\r\n",
                             [self = shared_from_this()](std::error_code ec, size_t head_size) {
                               if (!ec) self->read_body(head_size);
                             });
    }

    void read_body(size_t head_size) {
      const size_t body_size = content_length(buffer.substr(0, head_size));
      const size_t have = buffer.size() - head_size;
      if (have >= body_size) {
        answer(head_size, body_size);
        return;
      }
      asio::async_read(socket, asio::dynamic_buffer(buffer), asio::transfer_exactly(body_size - have),
                       [self = shared_from_this(), head_size, body_size](std::error_code ec, size_t) {
                         if (!ec) self->answer(head_size, body_size);
                       });
    }

    void answer(size_t head_size, size_t body_size) {
      arrived = std::chrono::steady_clock::now();
      body = buffer.substr(head_size, body_size);
      buffer.erase(0, head_size + body_size);
      if (loop.delay.count() == 0) {
        write_answer();
        return;
      }
      timer.expires_after(loop.delay);
      timer.async_wait([self = shared_from_this()](std::error_code ec) {
        if (!ec) self->write_answer();
      });
    }

    void write_answer() {
      asio::async_write(socket, asio::buffer(kAnswer, sizeof(kAnswer) - 1),
                        [self = shared_from_this()](std::error_code ec, size_t) {
                          if (ec) return;
                          self->loop.on_request(self->body, self->arrived, std::chrono::steady_clock::now());
                          self->read_head();
                        });
    }

    Loop& loop;
    asio::ip::tcp::socket socket;
    asio::steady_timer timer;
    std::string buffer;
    std::string body;
    TimePoint arrived;
  };

  void accept() {
    acceptor.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
      if (ec) return;
      std::error_code ignored;  // a connection already reset fails later, in its read
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      std::make_shared<Session>(*this, std::move(socket))->read_head();
      accept();
    });
  }
};

LoopbackWorker::LoopbackWorker(std::chrono::milliseconds delay, OnRequest on_request)
    : loop_(std::make_unique<Loop>()) {
  loop_->delay = delay;
  loop_->on_request = std::move(on_request);
  port_ = loop_->acceptor.local_endpoint().port();
  loop_->accept();
  thread_ = std::thread([loop = loop_.get()] { loop->io.run(); });
}

LoopbackWorker::~LoopbackWorker() {
  loop_->io.stop();
  thread_.join();
}

}  // namespace orch::bench
