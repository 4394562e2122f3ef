// SPDX-License-Identifier: MIT
//
// A tiny webhook worker for trying workflows without a model: it answers
// every POST with {"response": ...}. A prompt that asks to reply "approve or
// revise" gets "revise" the first time and "approve" after (so
// examples/workflows/review_loop.json goes round its loop once); any other
// prompt is echoed back as "echo: <prompt>".
//
//   build/examples/mock_worker --port 9001 &
//   build/orch run examples/workflows/review_loop.json --input '{"topic": "graphs"}'
//       --worker 'http://127.0.0.1:9001/webhook,tags=writer|reviewer'   (one line)
//
// Flags: --port P (default 9001; 0: any free port), --host H (default 127.0.0.1),
// --approve-after N (reviews answered "revise" before "approve", default 1),
// --delay-ms N (wait that long before each answer, default 0: slow enough to
// watch a run's nodes change state, as the console's browser test does).
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "orch/value.h"

namespace {

// The prompt of a webhook request ({"message": ...}) or of a chat one
// ({"messages": [{"content": ...}]}).
std::string prompt_of(const orch::Value& body) {
  if (body["message"].is_string()) return body["message"].as_string();
  if (const orch::Value* v = body.find_path("messages.0.content"); v && v->is_string()) return v->as_string();
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 9001;
  int approve_after = 1;
  int delay_ms = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--port") port = std::atoi(argv[i + 1]);
    else if (flag == "--host") host = argv[i + 1];
    else if (flag == "--approve-after") approve_after = std::atoi(argv[i + 1]);
    else if (flag == "--delay-ms") delay_ms = std::atoi(argv[i + 1]);
    else {
      std::cerr << "usage: mock_worker [--port P] [--host H] [--approve-after N] [--delay-ms N]\n";
      return 2;
    }
  }
  std::atomic<int> reviews{0};
  httplib::Server svr;
  svr.set_tcp_nodelay(true);
  svr.Post(".*", [&](const httplib::Request& req, httplib::Response& res) {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    auto body = orch::parse_json(req.body);
    std::string prompt = body.ok() ? prompt_of(*body) : "";
    std::string answer;
    if (prompt.find("approve or revise") != std::string::npos) {
      answer = reviews.fetch_add(1) < approve_after ? "revise" : "approve";
    } else {
      answer = "echo: " + prompt;
    }
    res.set_content(orch::Value::object({{"response", answer}}).to_json(), "application/json");
  });
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  // --port 0 takes a free port; the port is printed on stdout either way.
  const int bound = port == 0 ? svr.bind_to_any_port(host.c_str()) : (svr.bind_to_port(host.c_str(), port) ? port : -1);
  if (bound <= 0) {
    std::cerr << "mock_worker: cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  std::cout << bound << std::endl;
  std::cerr << "mock_worker listening on http://" << host << ":" << bound << "\n";
  return svr.listen_after_bind() ? 0 : 1;
}
