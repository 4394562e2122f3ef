// SPDX-License-Identifier: MIT
// No thread of orch lets an exception escape (issue #19): host-supplied code
// that throws on one of orch's threads (a timer callback, a pool task, a
// worker protocol's call/cancel/probe/validate/detach) is caught, counted, and
// the thread goes on with its next piece of work.
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "workers/call_pool.h"
#include "catch.h"
#include "orch/clock.h"
#include "orch/worker_registry.h"
#include "support/fake_workers.h"
#include "orch/thread_guard.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::Status;
using orch::WorkerInfo;
using orch::WorkerReply;
using orch::WorkerRequest;

namespace {

// Throws from every entry point the registry calls, as a careless plugin might.
class ThrowingProtocol : public orch::WorkerProtocol {
 public:
  Status validate(const WorkerInfo& worker) const override {
    if (worker.model == "throw") throw std::invalid_argument("validate boom");
    return Status();
  }
  void call(const WorkerInfo& worker, const WorkerRequest&, orch::Dispatcher::Callback done) override {
    if (worker.model != "hold") throw std::runtime_error("call boom");
    std::lock_guard<std::mutex> lock(mu_);
    held_ = std::move(done);
  }
  void cancel(const std::string&) override { throw std::logic_error("cancel boom"); }
  Status probe(const WorkerInfo&, std::chrono::milliseconds) override { throw 42; }
  void detach(const WorkerInfo&) override { throw std::runtime_error("detach boom"); }

  // Answers the held call.
  void answer() {
    orch::Dispatcher::Callback done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done = std::move(held_);
    }
    REQUIRE(done);
    WorkerReply reply;
    reply.output = "late";
    done(std::move(reply));
  }

 private:
  std::mutex mu_;
  orch::Dispatcher::Callback held_;
};

WorkerInfo worker(const std::string& id, const std::string& model = "") {
  WorkerInfo w;
  w.id = id;
  w.url = "boom://" + id;
  w.protocol = "boom";
  w.model = model;
  w.tags = {id};
  return w;
}

WorkerRequest request(const std::string& call_id, const std::string& tag) {
  WorkerRequest r;
  r.call_id = call_id;
  r.run_id = "run1";
  r.node_name = "n";
  r.node_type = "task";
  r.worker_tags = {tag};
  r.deadline = orch::Clock::system()->steady_now() + 10s;
  return r;
}

}  // namespace

TEST_CASE("a timer callback that throws does not stop the clock's thread", "[threads]") {
  auto clock = orch::Clock::system();
  const uint64_t before = orch::thread_exceptions();
  std::promise<void> later;
  std::future<void> fired = later.get_future();
  clock->call_after(0ms, [] { throw std::runtime_error("timer boom"); });
  clock->call_after(1ms, [&later] { later.set_value(); });
  REQUIRE(fired.wait_for(30s) == std::future_status::ready);
  CHECK(orch::thread_exceptions() > before);
}

TEST_CASE("a pool task that throws does not stop the pool", "[threads]") {
  orch::internal::CallPool pool(1);
  const uint64_t before = orch::thread_exceptions();
  std::promise<void> later;
  std::future<void> ran = later.get_future();
  pool.post([] { throw "not even a std::exception"; });
  pool.post([&later] { later.set_value(); });
  REQUIRE(ran.wait_for(30s) == std::future_status::ready);
  CHECK(orch::thread_exceptions() > before);
}

TEST_CASE("a worker protocol that throws fails its call, not the process", "[threads][workers]") {
  orch::WorkerRegistryOptions options;
  auto registry = std::make_shared<orch::WorkerRegistry>(options);
  auto protocol = std::make_shared<ThrowingProtocol>();
  REQUIRE(registry->register_protocol("boom", protocol).ok());

  // validate() throws: the record is refused with a message.
  Status refused = registry->add_worker(worker("v", "throw"));
  CHECK(refused.code() == orch::StatusCode::kInvalidArgument);
  CHECK(refused.message().find("failed to validate") != std::string::npos);

  // call() throws: the call fails with the exception's text.
  REQUIRE(registry->add_worker(worker("c")).ok());
  WorkerReply reply = orch::testing::dispatch_and_wait(*registry, request("c#1", "c"));
  REQUIRE_FALSE(reply.status.ok());
  CHECK(reply.status.message().find("worker protocol threw: call boom") != std::string::npos);

  // cancel() throws: the registry goes on, and the held call still ends.
  REQUIRE(registry->add_worker(worker("h", "hold")).ok());
  std::promise<WorkerReply> late;
  std::future<WorkerReply> late_reply = late.get_future();
  registry->dispatch(request("h#1", "h"), [&late](WorkerReply r) { late.set_value(std::move(r)); });
  const uint64_t before = orch::thread_exceptions();
  registry->cancel("h#1");
  CHECK(orch::thread_exceptions() > before);
  protocol->answer();
  REQUIRE(late_reply.wait_for(30s) == std::future_status::ready);
  CHECK(late_reply.get().output == "late");

  // probe() throws (not even a std::exception): a failed health check.
  registry->check_health();
  auto status = registry->get_worker("c");
  REQUIRE(status.ok());
  CHECK(status->last_error.find("health check") != std::string::npos);

  // detach() throws: the worker is removed all the same.
  CHECK(registry->remove_worker("c").ok());
  CHECK_FALSE(registry->get_worker("c").ok());

  // And the registry still serves calls.
  REQUIRE(registry->add_worker(worker("c2")).ok());
  CHECK(orch::testing::dispatch_and_wait(*registry, request("c2#1", "c2")).status.message().find("call boom") !=
        std::string::npos);
}
