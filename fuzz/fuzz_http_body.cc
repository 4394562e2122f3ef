// SPDX-License-Identifier: MIT
// Fuzzes the HTTP API's request bodies: every body-taking route gets the input
// and must answer with a status and a JSON body, never crash.
#include <httplib.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "app.h"
#include "http/http_api.h"

namespace {

struct Harness {
  Harness() {
    orch::server::ServerConfig config;
    config.db = ":memory:";
    app = std::move(orch::server::open_app(config, nullptr)).value();
    orch::server::install_api(*app, svr);
    port = svr.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { svr.listen_after_bind(); });
    while (!svr.is_running()) std::this_thread::yield();
    client = std::make_unique<httplib::Client>("127.0.0.1", port);
    client->set_tcp_nodelay(true);
    client->Post("/workflows", R"({"id":"w","nodes":{"t":{"type":"transform","updates":{"a":1}}},
      "edges":[["__start__","t"],["t","__end__"]]})", "application/json");
  }
  std::unique_ptr<orch::server::App> app;
  httplib::Server svr;
  int port = 0;
  std::thread thread;
  std::unique_ptr<httplib::Client> client;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* h = new Harness();  // lives for the whole fuzzing session
  std::string body(reinterpret_cast<const char*>(data), size);
  for (const char* path : {"/runs", "/workflows", "/workflows/w/run", "/runs/fork", "/runs/x/state",
                           "/runs/x/replay", "/runs/x/resume"}) {
    auto res = h->client->Post(path, body, "application/json");
    if (!res || res->status < 200 || res->status >= 600) std::abort();
    if (res->status >= 400 && res->body.find("\"error\"") == std::string::npos) std::abort();
  }
  return 0;
}
