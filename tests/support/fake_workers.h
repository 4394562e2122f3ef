// SPDX-License-Identifier: MIT
//
// FakeWorker: an HTTP worker on 127.0.0.1 (random port) for tests. It speaks
// one of the webhook, api_chat, openai_chat or a2a reply formats, records
// every request it gets, and is scripted call by call: delay, fail with a
// status, hang until released or stopped, return goto / state_updates /
// usage / rate_limit, send headers such as Retry-After.
//
// By default a call answers "echo: <prompt>" in the format's shape; with
// FakeReply::echo_call_number, "echo: <prompt> #<call>" (unique per call).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "orch/value.h"
#include "orch/dispatcher.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace orch::testing {

struct RecordedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  Value json;  // the body parsed, null when it is not JSON
  uint64_t call = 0;  // POSTs: arrival number 1, 2, ... (in the order they arrived); GETs: 0

  // The header's value, or "" when absent. `name` in lower case.
  std::string header(const std::string& name) const;
};

// What the fake does with one call.
struct FakeReply {
  int status = 200;
  int64_t delay_ms = 0;
  bool hang = false;             // answer only after release() (or never, until stop())
  bool echo = true;              // output text "echo: <prompt>" unless `text` is set
  bool echo_call_number = false; // with echo: "echo: <prompt> #<call>" (RecordedRequest::call)
  std::string text;              // the output text
  Value fields = Value::object();  // extra top-level fields (a2a: result.metadata)
  std::string raw_body;          // sent verbatim when not empty
  std::vector<std::pair<std::string, std::string>> headers;
  std::string a2a_state = "completed";  // task state of an a2a reply
  Value a2a_error;               // non-null: an a2a JSON-RPC error object

  static FakeReply with_text(std::string t) {
    FakeReply r;
    r.text = std::move(t);
    r.echo = false;
    return r;
  }
  static FakeReply failing(int http_status, std::string body = "") {
    FakeReply r;
    r.status = http_status;
    r.raw_body = body.empty() ? std::string(R"({"error":{"message":"fake failure"}})") : std::move(body);
    return r;
  }
};

class FakeWorker {
 public:
  enum class Format { kWebhook, kApiChat, kOpenAiChat, kA2a };

  explicit FakeWorker(Format format = Format::kWebhook, int threads = 32);
  ~FakeWorker();
  FakeWorker(const FakeWorker&) = delete;
  FakeWorker& operator=(const FakeWorker&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>"
  std::string base_url() const;
  // The URL to register the worker with: webhook /webhook, api_chat
  // /api/chat, openai_chat /v1/chat/completions, a2a the base URL.
  std::string url() const;

  // The next calls get these replies, in order; then the default.
  void push(FakeReply reply);
  void set_default(FakeReply reply);
  // Status of GET requests (health probes).
  void set_health_status(int status);

  std::vector<RecordedRequest> requests() const;
  // POST requests only.
  std::vector<RecordedRequest> calls() const;
  // Waits until `n` POSTs arrived; false on timeout.
  bool wait_for_calls(size_t n, std::chrono::milliseconds timeout) const;
  int in_flight() const;
  int max_in_flight() const;

  // Lets hung calls answer.
  void release();
  // Stops the server; hung calls end without an answer.
  void stop();

 private:
  void handle(const httplib::Request& req, httplib::Response& res);
  std::string reply_body(const FakeReply& reply, const Value& request, const std::string& task_id);

  Format format_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<FakeReply> script_;
  FakeReply default_reply_;
  int health_status_ = 200;
  std::vector<RecordedRequest> requests_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  uint64_t released_ = 0;  // release() generation
  bool stopping_ = false;
  uint64_t next_task_ = 1;  // the next POST's RecordedRequest::call (a2a: task id)
};

// Dispatches `request` and waits for the reply (Unavailable "test timeout"
// when none comes within `timeout`).
WorkerReply dispatch_and_wait(Dispatcher& dispatcher, const WorkerRequest& request,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace orch::testing
