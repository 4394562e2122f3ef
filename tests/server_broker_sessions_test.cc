// SPDX-License-Identifier: MIT
// Broker sessions are reference-counted by the workers that use them (issue
// #19): mqtt and redis_stream workers on several real brokers open one
// session per broker on their first call; deleting one of two workers of a
// broker keeps its session, deleting the last one closes it, and the
// process's threads (/proc/self/task) and file descriptors (/proc/self/fd)
// come back to where they were.
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "support/brokers.h"
#include "support/server_fixture.h"
#include "support/test_helpers.h"

using namespace std::chrono_literals;
using orch::testing::MosquittoBroker;
using orch::testing::RedisBroker;
using orch::testing::eventually;

namespace {

size_t entries(const char* dir) {
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir); it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}
size_t threads() { return entries("/proc/self/task"); }
size_t fds() { return entries("/proc/self/fd"); }

struct BrokerWorker {
  std::string id;
  std::string url;
  std::string protocol;
};

class Harness {
 public:
  Harness() {
    orch::server::ServerConfig config;
    config.health_check_interval_ms = 0;  // only calls open sessions here
    server_ = std::make_unique<orch::testing::TestServer>(config);
  }

  void add(const BrokerWorker& w) {
    const std::string body = R"({"id": ")" + w.id + R"(", "url": ")" + w.url + R"(", "protocol": ")" + w.protocol +
                             R"(", "tags": [")" + w.id + R"("]})";
    auto r = server_->client()->Post("/workers", body, "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 201);
  }

  void remove(const BrokerWorker& w) {
    auto r = server_->client()->Delete(("/workers/" + w.id).c_str());
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }

  // One call to each worker (opening its broker's session); waits for every
  // reply. No worker listens: mqtt calls fail at once (no subscriber), redis
  // ones at their short deadline.
  void call_each(const std::vector<BrokerWorker>& workers) {
    std::vector<std::future<orch::WorkerReply>> replies;
    for (const BrokerWorker& w : workers) {
      auto done = std::make_shared<std::promise<orch::WorkerReply>>();
      replies.push_back(done->get_future());
      orch::WorkerRequest request;
      request.call_id = "call-" + w.id + "-" + std::to_string(++calls_);
      request.run_id = "run";
      request.node_name = "n";
      request.node_type = "task";
      request.worker_tags = {w.id};
      request.deadline = orch::Clock::system()->steady_now() + 300ms;
      server_->app().registry->dispatch(request, [done](orch::WorkerReply r) { done->set_value(std::move(r)); });
    }
    for (auto& f : replies) REQUIRE(f.wait_for(30s) == std::future_status::ready);
  }

 private:
  std::unique_ptr<orch::testing::TestServer> server_;
  int calls_ = 0;
};

}  // namespace

TEST_CASE("the last worker of a broker closes its session: threads and fds return", "[server][workers][brokers]") {
  if (!MosquittoBroker::available() || !RedisBroker::available()) {
    WARN("mosquitto or redis-server not installed: skipped");
    return;
  }
  constexpr int kBrokersPerKind = 4;
  std::vector<std::unique_ptr<orch::testing::BrokerProcess>> brokers;
  std::vector<BrokerWorker> first;   // one worker per broker
  std::vector<BrokerWorker> second;  // a second worker on each broker
  for (int i = 0; i < kBrokersPerKind; ++i) {
    brokers.push_back(std::make_unique<MosquittoBroker>());
    const std::string mqtt = "mqtt://127.0.0.1:" + std::to_string(brokers.back()->port());
    first.push_back({"m" + std::to_string(i) + "a", mqtt + "/jobs/a", "mqtt"});
    second.push_back({"m" + std::to_string(i) + "b", mqtt + "/jobs/b", "mqtt"});
    brokers.push_back(std::make_unique<RedisBroker>());
    const std::string redis = "redis://127.0.0.1:" + std::to_string(brokers.back()->port());
    first.push_back({"r" + std::to_string(i) + "a", redis + "/jobs:a", "redis_stream"});
    second.push_back({"r" + std::to_string(i) + "b", redis + "/jobs:b", "redis_stream"});
  }

  Harness h;
  // Warm-up: whatever is started once per process (the library, the clock's
  // thread) is there before the baseline is taken.
  h.add({"warm-m", "mqtt://127.0.0.1:" + std::to_string(brokers[0]->port()) + "/warm", "mqtt"});
  h.add({"warm-r", "redis://127.0.0.1:" + std::to_string(brokers[1]->port()) + "/warm", "redis_stream"});
  h.call_each({{"warm-m", "", ""}, {"warm-r", "", ""}});
  h.remove({"warm-m", "", ""});
  h.remove({"warm-r", "", ""});
  size_t base_threads = 0;
  size_t base_fds = 0;
  // Settled when two looks in a row agree (the HTTP server closes a finished
  // connection just after its reply).
  REQUIRE(eventually([&] {
    size_t t = threads();
    size_t f = fds();
    std::this_thread::sleep_for(50ms);
    bool same = t == threads() && f == fds();
    base_threads = t;
    base_fds = f;
    return same;
  }));

  for (const BrokerWorker& w : first) h.add(w);
  for (const BrokerWorker& w : second) h.add(w);
  h.call_each(first);
  h.call_each(second);
  const size_t sessions = first.size();
  // At least one thread and one socket per session.
  CHECK(threads() >= base_threads + sessions);
  CHECK(fds() >= base_fds + sessions);
  const size_t busy_threads = threads();

  // Each broker still has a worker: every session stays.
  for (const BrokerWorker& w : first) h.remove(w);
  CHECK(threads() == busy_threads);

  // The last workers go: so do the sessions, their threads and their sockets.
  for (const BrokerWorker& w : second) h.remove(w);
  CHECK(eventually([&] { return threads() == base_threads && fds() == base_fds; }));
  CHECK(threads() == base_threads);
  CHECK(fds() == base_fds);
}
