// SPDX-License-Identifier: MIT
// An in-process orch server on a free loopback port, for HTTP API tests.
//
// With $ORCH_RESPONSE_LOG_DIR set (ctest sets it for every server_* test),
// every JSON response the server sends is appended to <dir>/<pid>.jsonl as
// {"method","route","path","status","body"}; the ctest entry
// openapi_responses_match_schemas then validates them all against
// docs/openapi.json (tests/openapi/validate_responses.py).
#pragma once

#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "app.h"
#include "http/http_api.h"
#include "http/http_listener.h"

namespace orch::testing {

class TestServer {
 public:
  explicit TestServer(server::ServerConfig config = {}) {
    if (config.db == "orch.db") config.db = ":memory:";
    auto app = server::open_app(config, nullptr);
    if (!app.ok()) throw std::runtime_error(app.status().to_string());
    app_ = std::move(app).value();
    record_responses(*app_);
    server::install_api(*app_, svr_);
    listener_ = std::make_unique<server::HttpListener>(svr_, server::listener_limits(app_->config));
    Status bound = listener_->bind("127.0.0.1", 0);
    if (!bound.ok()) throw std::runtime_error(bound.to_string());
    port_ = listener_->port();
    thread_ = std::thread([this] { listener_->run(); });
    while (!listener_->running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TestServer() {
    app_->stopping = true;
    app_->hub.close();
    listener_->stop();
    thread_.join();
    listener_.reset();  // ends the connections and joins its threads
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
  static void record_responses(server::App& app) {
    const char* dir = std::getenv("ORCH_RESPONSE_LOG_DIR");
    if (dir == nullptr || *dir == '\0') return;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const std::string path = std::string(dir) + "/" + std::to_string(getpid()) + ".jsonl";
    static std::mutex mu;  // one file per process, shared by its servers
    app.response_recorder = [path](const server::RecordedResponse& r) {
      if (r.content_type.rfind("application/json", 0) != 0) return;  // SSE, text: not JSON
      Value line = Value::object({{"method", r.method}, {"route", r.route}, {"path", r.path}, {"status", r.status},
                                  {"body", r.body}});
      // The request too, when the server took it (2xx) and it is JSON of a
      // sane size: the contract's request schemas must accept it.
      if (r.status >= 200 && r.status < 300 && !r.request_body.empty() && r.request_body.size() <= 65536 &&
          (r.request_body.front() == '{' || r.request_body.front() == '[')) {
        line.set("request_body", r.request_body);
      }
      std::lock_guard<std::mutex> lock(mu);
      std::ofstream(path, std::ios::app) << line.to_json() << "\n";
    };
  }

  std::unique_ptr<server::App> app_;
  httplib::Server svr_;
  std::unique_ptr<server::HttpListener> listener_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace orch::testing
