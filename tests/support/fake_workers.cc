// SPDX-License-Identifier: MIT
#include "support/fake_workers.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <future>
#include <stdexcept>

namespace orch::testing {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The prompt inside a request body of any of the four formats.
std::string prompt_of(const Value& body) {
  if (body["message"].is_string()) return body["message"].as_string();
  if (const Value* v = body.find_path("messages.0.content"); v && v->is_string()) return v->as_string();
  if (const Value* v = body.find_path("params.message.parts.0.text"); v && v->is_string()) return v->as_string();
  return "";
}

}  // namespace

std::string RecordedRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

FakeWorker::FakeWorker(Format format, int threads) : format_(format), server_(std::make_unique<httplib::Server>()) {
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server_->set_tcp_nodelay(true);
  server_->set_keep_alive_timeout(2);
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); };
  server_->Post(".*", handler);
  server_->Get(".*", handler);
  // httplib listens with a backlog of 5. A burst of new connections (orch
  // restarting and dispatching every recovered run at once) overflows that,
  // and the kernel resets some of them: calls fail that no real worker with
  // a normal backlog would fail. Keep the listening socket to raise it.
  int listening = -1;
  server_->set_socket_options([&listening](int sock) {
    httplib::default_socket_options(sock);
    listening = sock;
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  server_->set_socket_options(httplib::default_socket_options);
  if (port_ <= 0) throw std::runtime_error("fake worker: cannot bind a port");
  if (listening >= 0) ::listen(listening, SOMAXCONN);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

FakeWorker::~FakeWorker() { stop(); }

std::string FakeWorker::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string FakeWorker::url() const {
  switch (format_) {
    case Format::kWebhook: return base_url() + "/webhook";
    case Format::kApiChat: return base_url() + "/api/chat";
    case Format::kOpenAiChat: return base_url() + "/v1/chat/completions";
    case Format::kA2a: return base_url();
  }
  return base_url();
}

void FakeWorker::push(FakeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  script_.push_back(std::move(reply));
}

void FakeWorker::set_default(FakeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  default_reply_ = std::move(reply);
}

void FakeWorker::set_health_status(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  health_status_ = status;
}

std::vector<RecordedRequest> FakeWorker::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

std::vector<RecordedRequest> FakeWorker::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RecordedRequest> out;
  for (const auto& r : requests_) {
    if (r.method == "POST") out.push_back(r);
  }
  return out;
}

bool FakeWorker::wait_for_calls(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return static_cast<size_t>(std::count_if(requests_.begin(), requests_.end(),
                                             [](const RecordedRequest& r) { return r.method == "POST"; })) >= n;
  });
}

int FakeWorker::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

int FakeWorker::max_in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_in_flight_;
}

void FakeWorker::release() {
  std::lock_guard<std::mutex> lock(mu_);
  ++released_;
  cv_.notify_all();
}

void FakeWorker::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_all();
  }
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void FakeWorker::handle(const httplib::Request& req, httplib::Response& res) {
  RecordedRequest rec;
  rec.method = req.method;
  rec.path = req.path;
  for (const auto& [name, value] : req.headers) rec.headers[lower(name)] = value;
  rec.body = req.body;
  if (auto parsed = parse_json(req.body); parsed.ok()) rec.json = *parsed;
  const Value request_json = rec.json;

  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t task = req.method == "POST" ? next_task_++ : 0;
  rec.call = task;
  requests_.push_back(std::move(rec));
  cv_.notify_all();
  if (req.method == "GET") {
    res.status = health_status_;
    res.set_content(R"({"status":"ok"})", "application/json");
    return;
  }
  FakeReply reply = default_reply_;
  if (!script_.empty()) {
    reply = std::move(script_.front());
    script_.pop_front();
  }
  ++in_flight_;
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
  if (reply.delay_ms > 0) {
    cv_.wait_for(lock, std::chrono::milliseconds(reply.delay_ms), [&] { return stopping_; });
  }
  if (reply.hang) {
    const uint64_t generation = released_;
    cv_.wait(lock, [&] { return stopping_ || released_ != generation; });
  }
  --in_flight_;
  const bool stopped = stopping_;
  lock.unlock();
  if (stopped) {
    res.status = 503;
    return;
  }
  res.status = reply.status;
  for (const auto& [name, value] : reply.headers) res.set_header(name.c_str(), value);
  if (!reply.raw_body.empty()) {
    res.set_content(reply.raw_body, "application/json");
    return;
  }
  std::string prompt = prompt_of(request_json);
  if (reply.echo) reply.text = "echo: " + prompt;
  if (reply.echo && reply.echo_call_number) reply.text += " #" + std::to_string(task);
  std::string body = reply_body(reply, request_json, "task-" + std::to_string(task));
  res.set_content(body, "application/json");
}

std::string FakeWorker::reply_body(const FakeReply& reply, const Value& request, const std::string& task_id) {
  Value body;
  switch (format_) {
    case Format::kWebhook:
      body = Value::object({{"response", reply.text}});
      break;
    case Format::kApiChat:
      body = Value::object({{"reply", reply.text}});
      break;
    case Format::kOpenAiChat:
      body = Value::object(
          {{"id", "chatcmpl-fake"},
           {"object", "chat.completion"},
           {"model", request["model"]},
           {"choices", Value::array({Value::object(
                           {{"index", 0},
                            {"message", Value::object({{"role", "assistant"}, {"content", reply.text}})},
                            {"finish_reason", "stop"}})})}});
      break;
    case Format::kA2a: {
      Value rpc = Value::object({{"jsonrpc", "2.0"}, {"id", request["id"]}});
      if (!reply.a2a_error.is_null()) {
        rpc.set("error", reply.a2a_error);
        return rpc.to_json();
      }
      Value text_parts = Value::array({Value::object({{"kind", "text"}, {"text", reply.text}})});
      Value status = Value::object({{"state", reply.a2a_state}, {"timestamp", "2026-01-01T00:00:00Z"}});
      Value task = Value::object({{"id", task_id},
                                  {"contextId", request.find_path("params.message.contextId")
                                                    ? *request.find_path("params.message.contextId")
                                                    : Value("ctx")},
                                  {"kind", "task"}});
      if (reply.a2a_state == "completed") {
        task.set("status", std::move(status));
        task.set("artifacts",
                 Value::array({Value::object({{"artifactId", "artifact-" + task_id}, {"parts", text_parts}})}));
      } else {
        status.set("message", Value::object({{"kind", "message"}, {"role", "agent"}, {"messageId", "m-" + task_id},
                                             {"parts", text_parts}}));
        task.set("status", std::move(status));
      }
      task.set("metadata", reply.fields);
      rpc.set("result", std::move(task));
      return rpc.to_json();
    }
  }
  for (const auto& [key, value] : reply.fields.as_object()) body.set(key, value);
  return body.to_json();
}

WorkerReply dispatch_and_wait(Dispatcher& dispatcher, const WorkerRequest& request,
                              std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<WorkerReply>>();
  std::future<WorkerReply> future = promise->get_future();
  dispatcher.dispatch(request, [promise](WorkerReply reply) { promise->set_value(std::move(reply)); });
  if (future.wait_for(timeout) != std::future_status::ready) {
    WorkerReply reply;
    reply.status = Status::unavailable("test timeout");
    return reply;
  }
  return future.get();
}

}  // namespace orch::testing
