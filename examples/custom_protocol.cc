// SPDX-License-Identifier: MIT
//
// A worker protocol plugin. `uppercase` stands for any transport a host
// brings (a message bus, a job queue, an RPC stack): its calls are handed to a
// background thread, which answers through the callback, so call() never
// blocks. The protocol is registered on a WorkerRegistry by name, a worker is
// added with that protocol, and the engine reaches it through the registry:
//
//   __start__ -> shout -> again -> __end__
#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "orch/orch.h"
#include "orch/worker_registry.h"

namespace {

class UppercaseProtocol : public orch::WorkerProtocol {
 public:
  UppercaseProtocol() : thread_([this] { serve(); }) {}
  ~UppercaseProtocol() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Called when a worker is registered with this protocol.
  orch::Status validate(const orch::WorkerInfo& worker) const override {
    if (worker.url.rfind("mem://", 0) != 0) {
      return orch::Status::invalid_argument("uppercase workers need a mem:// url, got " + worker.url);
    }
    return orch::Status();
  }

  void call(const orch::WorkerInfo& worker, const orch::WorkerRequest& request,
            orch::Dispatcher::Callback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{worker.id, request.prompt, std::move(done)});
    cv_.notify_one();
  }

 private:
  struct Job {
    std::string worker_id;
    std::string prompt;
    orch::Dispatcher::Callback done;
  };

  void serve() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      const bool stopping = stopping_;
      lock.unlock();
      orch::WorkerReply reply;
      if (stopping) {
        reply.status = orch::Status::cancelled("uppercase worker stopped");  // every call gets its answer
      } else {
        reply.output = job.prompt;
        std::transform(reply.output.begin(), reply.output.end(), reply.output.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        const auto words = static_cast<long long>(std::count(job.prompt.begin(), job.prompt.end(), ' ') + 1);
        // Top-level reply fields travel in the envelope.
        reply.envelope = orch::Value::object(
            {{"usage", orch::Value::object({{"input_tokens", words}, {"output_tokens", words}})}});
      }
      job.done(std::move(reply));
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

int fail(const orch::Status& status) {
  std::fprintf(stderr, "%s\n", status.to_string().c_str());
  return 1;
}

}  // namespace

int main() {
  auto protocol = std::make_shared<UppercaseProtocol>();
  auto workers = std::make_shared<orch::WorkerRegistry>();
  if (auto s = workers->register_protocol("uppercase", protocol); !s.ok()) return fail(s);
  orch::WorkerInfo worker;
  worker.id = "shouter";
  worker.url = "mem://shouter";
  worker.protocol = "uppercase";
  worker.max_concurrent = 4;
  if (auto s = workers->add_worker(worker); !s.ok()) return fail(s);

  auto parsed = orch::parse_workflow_json(R"({
    "state_schema": {"loud": {"type": "string"}, "louder": {"type": "string"}},
    "nodes": {
      "shout": {"type": "task", "prompt_template": "hello {{input.name}}", "output_key": "loud"},
      "again": {"type": "task", "prompt_template": "{{state.loud}}, really", "output_key": "louder"}
    },
    "edges": [["__start__", "shout"], ["shout", "again"], ["again", "__end__"]]
  })");
  if (!parsed.ok()) return fail(parsed.status());

  orch::EngineOptions options;
  options.store = orch::new_memory_store();
  options.dispatcher = workers;
  auto engine = orch::Engine::open(options);
  if (!engine.ok()) return fail(engine.status());

  orch::RunOptions run;
  run.input = orch::Value::object({{"name", "orch"}});
  auto id = (*engine)->start_run(std::make_shared<orch::Workflow>(**parsed), run);
  if (!id.ok()) return fail(id.status());
  auto done = (*engine)->wait(*id, std::chrono::seconds(10));
  if (!done.ok()) return fail(done.status());

  std::printf("run %s %s\nstate: %s\ntokens: %lld in, %lld out\n", done->id.c_str(),
              std::string(orch::run_status_name(done->status)).c_str(), done->state.to_json().c_str(),
              static_cast<long long>(done->input_tokens), static_cast<long long>(done->output_tokens));
  const bool ok = done->status == orch::RunStatus::kCompleted &&
                  done->state["louder"].get_string("") == "HELLO ORCH, REALLY" && done->input_tokens == 5;
  return ok ? 0 : 1;
}
