// SPDX-License-Identifier: MIT
// An in-process orch server on a free loopback port, for HTTP API tests.
#pragma once

#include <httplib.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "app.h"
#include "http_api.h"

namespace orch::testing {

class TestServer {
 public:
  explicit TestServer(server::ServerConfig config = {}) {
    if (config.db == "orch.db") config.db = ":memory:";
    auto app = server::open_app(config, nullptr);
    if (!app.ok()) throw std::runtime_error(app.status().to_string());
    app_ = std::move(app).value();
    server::install_api(*app_, svr_);
    port_ = svr_.bind_to_any_port("127.0.0.1");
    server::raise_listen_backlog(port_);
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TestServer() {
    app_->stopping = true;
    app_->hub.close();
    svr_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  server::App& app() { return *app_; }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_tcp_nodelay(true);
    c->set_read_timeout(10, 0);
    return c;
  }

 private:
  std::unique_ptr<server::App> app_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace orch::testing
