// SPDX-License-Identifier: MIT
// webhook, api_chat, openai_chat and a2a over HTTP. An http:// call goes out
// on the event-driven client (async_http_client.h) and its reply is handled on
// the client's loop; an https:// call, and a health probe, is a blocking
// request on the transport's thread pool (http_transport.h). call() returns at
// once either way.
#include "orch/http_workers.h"

#include <chrono>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "workers/http/async_http_client.h"
#include "workers/http/http_transport.h"
#include "orch/id.h"
#include "workers/worker_reply.h"
#include "workers/worker_wire.h"

namespace orch::internal {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kA2aPollInterval{250};
constexpr size_t kMaxA2aSessions = 10000;

// A2A tasks waiting for input, by session: the next turn continues them.
class A2aSessions {
 public:
  std::string task_for(const std::string& session) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(session);
    return it == tasks_.end() ? std::string() : it->second;
  }
  void update(const std::string& session, const std::string& task_id, const std::string& state) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!task_id.empty() && (state == "input-required" || state == "auth-required")) {
      if (tasks_.size() >= kMaxA2aSessions) tasks_.erase(tasks_.begin());
      tasks_[session] = task_id;
    } else {
      tasks_.erase(session);
    }
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::string> tasks_;
};

bool a2a_in_progress(const std::string& state) { return state == "submitted" || state == "working"; }

struct CallPlan {
  WireProtocol wire;
  HttpRequestSpec spec;
  std::string session;
};

// A transport error as a reply: a bad URL, a refused host or a reply over the
// size limits would fail again the same way; the rest may pass on a retry.
WorkerReply transport_failure(const Status& status, bool polling) {
  const bool permanent =
      status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kResourceExhausted;
  return failure(status, polling ? status.code() != StatusCode::kResourceExhausted : !permanent);
}

// What one response means for a call: its reply, or (A2A) a task that is
// still running and is to be polled with tasks/get.
struct Outcome {
  WorkerReply reply;
  std::string poll_task;  // not empty: poll this task
};

Outcome interpret(const CallPlan& plan, A2aSessions& sessions, const Clock& clock, Result<HttpResponse> response,
                  bool polling) {
  if (!response.ok()) return {transport_failure(response.status(), polling), ""};
  if (response->status < 200 || response->status >= 300) return {http_error_reply(*response, clock.now_ms()), ""};
  if (plan.wire != WireProtocol::kA2a) {
    WorkerReply reply = parse_chat_reply(response->body);
    if (reply.status.ok() && !reply.envelope.find("rate_limit")) {
      Value limits = rate_limit_from_headers(*response);
      if (!limits.is_null()) reply.envelope.set("rate_limit", std::move(limits));
    }
    return {std::move(reply), ""};
  }
  A2aResult result = parse_a2a_reply(response->body);
  // A server that answered before the task finished: poll tasks/get.
  if (result.reply.status.ok() && a2a_in_progress(result.state) && !result.task_id.empty()) {
    if (clock.steady_now() + kA2aPollInterval >= plan.spec.deadline) {
      return {failure(Status::deadline_exceeded("A2A: task still " + result.state + " at the deadline"), true), ""};
    }
    return {WorkerReply(), result.task_id};
  }
  // Remember a task that waits for input (the next turn continues it); forget it otherwise.
  sessions.update(plan.session, result.task_id, result.state);
  return {std::move(result.reply), ""};
}

// The tasks/get request that polls `task_id`.
HttpRequestSpec poll_request(const CallPlan& plan, const std::string& task_id) {
  HttpRequestSpec poll = plan.spec;
  poll.body = Value::object({{"jsonrpc", "2.0"},
                             {"id", plan.session},
                             {"method", "tasks/get"},
                             {"params", Value::object({{"id", task_id}})}})
                  .to_json();
  return poll;
}

// Sends `plan` and turns the response into a reply, blocking (https://, on the
// transport's call threads).
WorkerReply perform(HttpTransport& transport, A2aSessions& sessions, const CallPlan& plan) {
  Outcome outcome = interpret(plan, sessions, *transport.clock(), transport.send(plan.spec), false);
  while (!outcome.poll_task.empty()) {
    std::this_thread::sleep_for(kA2aPollInterval);
    outcome = interpret(plan, sessions, *transport.clock(), transport.send(poll_request(plan, outcome.poll_task)), true);
  }
  return std::move(outcome.reply);
}

// Sends `spec` of `plan` on the event-driven client and turns the response
// into a reply there (http://): polls of an A2A task follow as timed sends.
// `done` runs on the loop thread, in a ReplyScope that says so: the engine
// handles the reply there only when nothing in that waits (its store writes
// without waiting), else on its own threads. The client is held weakly: once
// it is gone (the protocols were destroyed), a poll fails Cancelled.
void perform_async(std::weak_ptr<AsyncHttpClient> weak_client, std::shared_ptr<A2aSessions> sessions,
                   std::shared_ptr<const CallPlan> plan, HttpRequestSpec spec, bool polling,
                   Dispatcher::Callback done) {
  std::shared_ptr<AsyncHttpClient> client = weak_client.lock();
  if (!client) {
    done(failure(Status::cancelled("call cancelled"), true));
    return;
  }
  auto on_response = [weak_client, sessions, plan, polling, done = std::move(done),
                      clock = client->clock()](Result<HttpResponse> response) mutable {
    Outcome outcome = interpret(*plan, *sessions, *clock, std::move(response), polling);
    if (!outcome.poll_task.empty()) {
      HttpRequestSpec poll = poll_request(*plan, outcome.poll_task);
      perform_async(std::move(weak_client), std::move(sessions), plan, std::move(poll), true, std::move(done));
      return;
    }
    // The next calls this reply leads to are sent from this thread, after
    // done() returns: they only queue work on the loop.
    ReplyScope next_calls(/*on_event_loop=*/true);
    done(std::move(outcome.reply));
  };
  client->send(std::move(spec), std::move(on_response), polling ? kA2aPollInterval : milliseconds(0));
}

class HttpWorkerProtocol final : public WorkerProtocol {
 public:
  HttpWorkerProtocol(WireProtocol wire, std::shared_ptr<AsyncHttpClient> client,
                     std::shared_ptr<HttpTransport> transport, std::shared_ptr<A2aSessions> sessions,
                     int64_t default_timeout_ms)
      : wire_(wire),
        client_(std::move(client)),
        transport_(std::move(transport)),
        sessions_(std::move(sessions)),
        default_timeout_(default_timeout_ms) {}

  Status validate(const WorkerInfo& worker) const override { return validate_worker(wire_, worker); }

  void call(const WorkerInfo& worker, const WorkerRequest& request, Dispatcher::Callback done) override {
    Result<std::string> url = call_url(wire_, worker);
    if (!url.ok()) {
      done(failure(url.status(), false));
      return;
    }
    CallPlan plan{wire_, HttpRequestSpec(), session_key(request)};
    std::string task_id = wire_ == WireProtocol::kA2a ? sessions_->task_for(plan.session) : std::string();
    Result<std::string> body = request_body(wire_, worker, request, new_uuid(), task_id);
    if (!body.ok()) {
      done(failure(body.status(), false));
      return;
    }
    plan.spec.url = std::move(url).value();
    plan.spec.body = std::move(body).value();
    plan.spec.bearer_token = worker.token;
    if (!request.traceparent.empty()) plan.spec.headers.emplace_back("traceparent", request.traceparent);
    plan.spec.call_id = request.call_id;
    plan.spec.deadline = request.deadline == SteadyTime()
                             ? transport_->clock()->steady_now() + default_timeout_
                             : request.deadline;
    if (plan.spec.url.compare(0, 7, "http://") == 0) {
      auto shared_plan = std::make_shared<const CallPlan>(std::move(plan));
      perform_async(client_, sessions_, shared_plan, shared_plan->spec, false, std::move(done));
      return;
    }
    // https://: a blocking call on the transport's threads (the event-driven
    // client has no TLS). The task holds the transport by pointer: the
    // transport joins its pool before it goes away, and the task touches it
    // only before done().
    HttpTransport* transport = transport_.get();
    transport->run(request.call_id, [transport, sessions = sessions_, plan = std::move(plan),
                                     done = std::move(done)]() mutable {
      WorkerReply reply = perform(*transport, *sessions, plan);
      transport->forget(plan.spec.call_id);
      // The next calls this reply leads to are sent from this (call) thread,
      // after done() returns, rather than handed to other threads.
      ReplyScope next_calls;
      done(std::move(reply));
    });
  }

  void cancel(const std::string& call_id) override {
    client_->cancel(call_id);
    transport_->cancel(call_id);
  }

  Status probe(const WorkerInfo& worker, milliseconds timeout) override {
    Result<std::string> url = call_url(wire_, worker);
    if (!url.ok()) return url.status();
    HttpRequestSpec spec;
    spec.method = "GET";
    spec.url = std::move(url).value();
    spec.bearer_token = worker.token;
    spec.deadline = transport_->clock()->steady_now() + timeout;
    Result<HttpResponse> response = transport_->send(spec);
    if (!response.ok()) return response.status();
    // Anything below 500 (404 and 405 included) shows a live server.
    if (response->status >= 500) return Status::unavailable("HTTP " + std::to_string(response->status));
    return Status();
  }

 private:
  WireProtocol wire_;
  std::shared_ptr<AsyncHttpClient> client_;     // http://
  std::shared_ptr<HttpTransport> transport_;   // https://, and health probes
  std::shared_ptr<A2aSessions> sessions_;
  milliseconds default_timeout_;
};

}  // namespace

}  // namespace orch::internal

namespace orch {

Status register_http_protocols(WorkerRegistry& registry, HttpWorkerOptions options) {
  using namespace internal;
  const WorkerRegistryOptions& defaults = registry.options();
  std::shared_ptr<Clock> clock = options.clock ? options.clock : defaults.clock;
  const int64_t timeout_ms = options.default_timeout_ms.value_or(defaults.default_timeout_ms);
  auto transport = std::make_shared<HttpTransport>(clock, options.max_call_threads,
                                                   options.max_idle_connections,
                                                   options.host_policy.value_or(defaults.host_policy));
  AsyncHttpClientOptions client_options;
  client_options.clock = clock;
  client_options.threads = options.io_threads;
  client_options.max_idle_per_origin = options.max_idle_connections;
  client_options.policy = options.host_policy.value_or(defaults.host_policy);
  auto client = std::make_shared<AsyncHttpClient>(std::move(client_options));
  auto sessions = std::make_shared<A2aSessions>();
  const std::pair<const char*, WireProtocol> kProtocols[] = {{"webhook", WireProtocol::kWebhook},
                                                              {"api_chat", WireProtocol::kApiChat},
                                                              {"openai_chat", WireProtocol::kOpenAiChat},
                                                              {"a2a", WireProtocol::kA2a}};
  for (const auto& [name, wire] : kProtocols) {
    ORCH_RETURN_IF_ERROR(
        registry.register_protocol(name, std::make_shared<HttpWorkerProtocol>(wire, client, transport, sessions, timeout_ms)));
  }
  return Status();
}

}  // namespace orch
