// SPDX-License-Identifier: MIT
// WorkerRegistry: selection, capacity and the wait queue, circuit breaker,
// cancellation, rate limits, health checks (issue: workers).
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>

#include "catch.h"
#include "orch/worker_registry.h"
#include "support/fake_workers.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::CircuitState;
using orch::Status;
using orch::StatusCode;
using orch::Value;
using orch::WorkerInfo;
using orch::WorkerReply;
using orch::WorkerRequest;

namespace {

WorkerInfo info(const std::string& id, const std::string& url, const std::string& protocol) {
  WorkerInfo w;
  w.id = id;
  w.url = url;
  w.protocol = protocol;
  return w;
}

// A protocol whose calls wait until the test answers them.
class ManualProtocol : public orch::WorkerProtocol {
 public:
  struct Open {
    WorkerInfo worker;
    WorkerRequest request;
    orch::Dispatcher::Callback done;
  };

  void call(const WorkerInfo& worker, const WorkerRequest& request, orch::Dispatcher::Callback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    open_.push_back(Open{worker, request, std::move(done)});
  }
  void cancel(const std::string& call_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_.push_back(call_id);
  }
  Status probe(const WorkerInfo&, std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> lock(mu_);
    return health_;
  }

  size_t open_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return open_.size();
  }
  // The open calls' ids, oldest first.
  std::vector<std::string> open_ids() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> ids;
    for (const auto& o : open_) ids.push_back(o.request.call_id);
    return ids;
  }
  std::string worker_of(const std::string& call_id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& o : open_) {
      if (o.request.call_id == call_id) return o.worker.id;
    }
    return "";
  }
  // Answers open call `call_id` (the oldest when empty).
  void answer(const std::string& call_id, WorkerReply reply) {
    orch::Dispatcher::Callback done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = open_.begin(); it != open_.end(); ++it) {
        if (call_id.empty() || it->request.call_id == call_id) {
          done = std::move(it->done);
          open_.erase(it);
          break;
        }
      }
    }
    REQUIRE(done);
    done(std::move(reply));
  }
  void answer_ok(const std::string& call_id, const std::string& output = "ok") {
    WorkerReply r;
    r.output = output;
    answer(call_id, std::move(r));
  }
  void answer_error(const std::string& call_id, Status status = Status::unavailable("HTTP 500")) {
    WorkerReply r;
    r.status = std::move(status);
    answer(call_id, std::move(r));
  }
  std::vector<std::string> cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }
  void set_health(Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    health_ = std::move(s);
  }

 private:
  std::mutex mu_;
  std::deque<Open> open_;
  std::vector<std::string> cancelled_;
  Status health_;
};

// Collects replies by call id.
class Replies {
 public:
  orch::Dispatcher::Callback callback(const std::string& id) {
    return [this, id](WorkerReply reply) {
      std::lock_guard<std::mutex> lock(mu_);
      replies_[id] = std::move(reply);
    };
  }
  std::optional<WorkerReply> get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = replies_.find(id);
    if (it == replies_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, WorkerReply> replies_;
};

struct Fixture {
  explicit Fixture(std::shared_ptr<orch::Clock> c = nullptr) : clock(std::move(c)) {
    orch::WorkerRegistryOptions options;
    options.clock = clock;
    options.circuit_cooldown_ms = 60000;
    registry = std::make_shared<orch::WorkerRegistry>(options);
    REQUIRE(registry->register_protocol("manual", protocol).ok());
    REQUIRE(registry->register_protocol("a2a", protocol).ok());
  }
  void add(const std::string& id, std::vector<std::string> tags = {}, int max_concurrent = 1,
           const std::string& proto = "manual") {
    WorkerInfo w;
    w.id = id;
    w.url = "manual://" + id;
    w.protocol = proto;
    w.tags = std::move(tags);
    w.max_concurrent = max_concurrent;
    REQUIRE(registry->add_worker(w).ok());
  }
  WorkerRequest request(const std::string& call_id, std::vector<std::string> tags = {},
                        const std::string& type = "task") {
    WorkerRequest r;
    r.call_id = call_id;
    r.run_id = "run1";
    r.node_name = "node";
    r.node_type = type;
    r.worker_tags = std::move(tags);
    if (clock) r.deadline = clock->steady_now() + 10s;
    return r;
  }
  void dispatch(const std::string& call_id, std::vector<std::string> tags = {}, const std::string& type = "task") {
    registry->dispatch(request(call_id, std::move(tags), type), replies.callback(call_id));
  }

  std::shared_ptr<orch::Clock> clock;
  std::shared_ptr<ManualProtocol> protocol = std::make_shared<ManualProtocol>();
  std::shared_ptr<orch::WorkerRegistry> registry;
  Replies replies;
};

}  // namespace

TEST_CASE("worker records are validated on add, update and remove", "[workers]") {
  Fixture f;
  WorkerInfo w;
  w.id = "w1";
  w.url = "manual://w1";
  w.protocol = "manual";
  CHECK(f.registry->add_worker(WorkerInfo{}).code() == StatusCode::kInvalidArgument);
  WorkerInfo bad = w;
  bad.protocol = "carrier_pigeon";
  Status s = f.registry->add_worker(bad);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(s.message() == "unsupported worker protocol: carrier_pigeon");
  bad = w;
  bad.max_concurrent = 0;
  CHECK(f.registry->add_worker(bad).code() == StatusCode::kInvalidArgument);
  REQUIRE(f.registry->add_worker(w).ok());
  CHECK(f.registry->add_worker(w).code() == StatusCode::kAlreadyExists);
  WorkerInfo ghost = w;
  ghost.id = "ghost";
  CHECK(f.registry->update_worker(ghost).code() == StatusCode::kNotFound);
  CHECK(f.registry->remove_worker("ghost").code() == StatusCode::kNotFound);
  w.tags = {"x"};
  REQUIRE(f.registry->update_worker(w).ok());
  REQUIRE(f.registry->list_workers().size() == 1);
  CHECK(f.registry->list_workers()[0].info.tags == std::vector<std::string>{"x"});
  REQUIRE(f.registry->remove_worker("w1").ok());
  CHECK(f.registry->list_workers().empty());
  CHECK(f.registry->get_worker("w1").status().code() == StatusCode::kNotFound);
}

TEST_CASE("a registry starts with no protocol", "[workers]") {
  orch::WorkerRegistry registry;
  CHECK(registry.protocol_names().empty());
  Status s = registry.add_worker(info("h", "http://127.0.0.1:1/webhook", "webhook"));
  CHECK(s.message() == "unsupported worker protocol: webhook");
}

TEST_CASE("the built-in protocols are registered and check their records", "[workers]") {
  orch::WorkerRegistry registry;
  REQUIRE(orch::register_builtin_protocols(registry).ok());
  auto names = registry.protocol_names();
  for (const char* p : {"webhook", "api_chat", "openai_chat", "a2a"}) {
    CHECK(std::find(names.begin(), names.end(), p) != names.end());
  }
  Status s = registry.add_worker(info("o", "http://127.0.0.1:1/v1/chat/completions", "openai_chat"));
  CHECK(s.message() == "worker protocol openai_chat requires worker.model");
  s = registry.add_worker(info("h", "http://127.0.0.1:1/", "webhook"));
  CHECK(s.message() == "webhook worker url must include explicit path (for example /webhook)");
  CHECK(registry.add_worker(info("h", "http://127.0.0.1:1/webhook", "webhook")).ok());
  CHECK(registry.add_worker(info("a", "ftp://127.0.0.1:1", "a2a")).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("tags: no tags takes any worker, otherwise one tag in common", "[workers]") {
  Fixture f;
  f.add("wa", {"a"}, 5);
  f.add("wb", {"b", "c"}, 5);
  f.dispatch("c1", {"c"});
  f.dispatch("c2", {"a", "z"});
  f.dispatch("c3");
  REQUIRE(f.protocol->open_calls() == 3);
  CHECK(f.protocol->worker_of("c1") == "wb");
  CHECK(f.protocol->worker_of("c2") == "wa");
  // No worker has tag z: the call waits for one (NullBoiler's no_worker).
  f.dispatch("c4", {"z"});
  CHECK_FALSE(f.replies.get("c4"));
  CHECK(f.registry->queued_calls() == 1);
  f.add("wz", {"z"}, 1);
  CHECK(f.protocol->worker_of("c4") == "wz");
  CHECK(f.registry->queued_calls() == 0);
}

TEST_CASE("no workers at all: the call waits for one to be added or fails at its deadline naming why", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  Fixture f(clock);
  f.dispatch("c1");
  f.dispatch("c2", {"gpu"});
  CHECK_FALSE(f.replies.get("c1"));
  CHECK(f.registry->queued_calls() == 2);
  f.add("w", {"cpu"}, 5);  // takes c1 (no tags wanted), not c2
  CHECK(f.protocol->worker_of("c1") == "w");
  CHECK(f.registry->queued_calls() == 1);
  clock->advance(11s);
  auto r = f.replies.get("c2");
  REQUIRE(r);
  CHECK(r->status.code() == StatusCode::kDeadlineExceeded);
  CHECK(r->status.message() == "no worker available for node node (tags: gpu) before its deadline");
  CHECK(r->retryable);
  CHECK(f.registry->queued_calls() == 0);
}

TEST_CASE("least in-flight worker wins, ties go to the newest", "[workers]") {
  Fixture f;
  f.add("old", {}, 5);
  f.add("new", {}, 5);
  f.dispatch("c1");
  f.dispatch("c2");
  f.dispatch("c3");
  CHECK(f.protocol->worker_of("c1") == "new");
  CHECK(f.protocol->worker_of("c2") == "old");
  CHECK(f.protocol->worker_of("c3") == "new");
  f.protocol->answer_ok("c1");
  f.protocol->answer_ok("c3");
  f.dispatch("c4");
  CHECK(f.protocol->worker_of("c4") == "new");
  auto r = f.replies.get("c1");
  REQUIRE(r);
  CHECK(r->worker_id == "new");
  CHECK(f.registry->get_worker("old")->in_flight == 1);
}

TEST_CASE("agent nodes prefer a2a workers, then fall back to the others", "[workers]") {
  Fixture f;
  f.add("agent", {}, 1, "a2a");
  f.add("http", {}, 1);
  f.dispatch("c1", {}, "agent");
  CHECK(f.protocol->worker_of("c1") == "agent");
  f.dispatch("c2", {}, "agent");
  CHECK(f.protocol->worker_of("c2") == "http");
  f.protocol->answer_ok("c1");
  f.protocol->answer_ok("c2");
  f.dispatch("c3", {}, "task");
  CHECK(f.protocol->worker_of("c3") == "http");  // newest; no preference for tasks
}

TEST_CASE("max_concurrent is enforced, extra calls wait in FIFO order", "[workers]") {
  Fixture f;
  f.add("w", {}, 2);
  for (const char* id : {"c1", "c2", "c3", "c4", "c5"}) f.dispatch(id);
  CHECK(f.protocol->open_ids() == std::vector<std::string>{"c1", "c2"});
  CHECK(f.registry->queued_calls() == 3);
  CHECK(f.registry->get_worker("w")->in_flight == 2);
  f.protocol->answer_ok("c2");
  CHECK(f.protocol->open_ids() == std::vector<std::string>{"c1", "c3"});
  f.protocol->answer_ok("c1");
  CHECK(f.protocol->open_ids() == std::vector<std::string>{"c3", "c4"});
  f.protocol->answer_ok("c3");
  f.protocol->answer_ok("c4");
  f.protocol->answer_ok("c5");
  CHECK(f.registry->queued_calls() == 0);
  for (const char* id : {"c1", "c2", "c3", "c4", "c5"}) {
    auto r = f.replies.get(id);
    REQUIRE(r);
    CHECK(r->status.ok());
  }
  auto w = *f.registry->get_worker("w");
  CHECK(w.in_flight == 0);
  CHECK(w.calls == 5);
}

TEST_CASE("a call waiting for capacity fails at its deadline", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  Fixture f(clock);
  f.add("w", {}, 1);
  f.dispatch("c1");
  WorkerRequest r2 = f.request("c2");
  r2.deadline = clock->steady_now() + 1s;
  f.registry->dispatch(r2, f.replies.callback("c2"));
  CHECK(f.registry->queued_calls() == 1);
  clock->advance(999ms);
  CHECK(!f.replies.get("c2"));
  clock->advance(1ms);
  auto r = f.replies.get("c2");
  REQUIRE(r);
  CHECK(r->status.code() == StatusCode::kDeadlineExceeded);
  CHECK(r->retryable);
  CHECK(f.registry->queued_calls() == 0);
  f.protocol->answer_ok("c1");
  CHECK(f.protocol->open_calls() == 0);
}

TEST_CASE("cancel by step id drops waiting calls and cancels running ones", "[workers]") {
  Fixture f;
  f.add("w", {}, 1);
  f.dispatch("s1#1.1");
  f.dispatch("s2#item0.1");
  f.dispatch("s22#1.1");
  f.registry->cancel("s2");
  auto r = f.replies.get("s2#item0.1");
  REQUIRE(r);
  CHECK(r->status.code() == StatusCode::kCancelled);
  CHECK(!f.replies.get("s22#1.1"));  // another step that merely shares a prefix
  f.registry->cancel("s1");
  CHECK(f.protocol->cancelled() == std::vector<std::string>{"s1#1.1"});
  f.protocol->answer("s1#1.1", [] {
    WorkerReply c;
    c.status = Status::cancelled("call cancelled");
    return c;
  }());
  CHECK(f.protocol->open_ids() == std::vector<std::string>{"s22#1.1"});
  CHECK(f.registry->get_worker("w")->consecutive_failures == 0);  // a cancel is not the worker's fault
}

TEST_CASE("the circuit opens after 3 failures and a probe closes it after the cooldown", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  Fixture f(clock);
  f.add("w", {}, 3);
  for (int i = 0; i < 3; ++i) {
    std::string id = "f" + std::to_string(i);
    f.dispatch(id);
    f.protocol->answer_error(id);
  }
  auto w = *f.registry->get_worker("w");
  CHECK(w.circuit == CircuitState::kOpen);
  CHECK(w.consecutive_failures == 3);
  CHECK(w.last_error == "HTTP 500");
  CHECK(w.circuit_open_until_ms == clock->now_ms() + 60000);

  // The circuit is open: calls wait for it to let a probe through (their
  // deadline, 10 s, comes first for this one).
  f.dispatch("blocked");
  CHECK_FALSE(f.replies.get("blocked"));
  CHECK(f.protocol->open_calls() == 0);
  clock->advance(11s);
  auto r = f.replies.get("blocked");
  REQUIRE(r);
  CHECK(r->status.code() == StatusCode::kDeadlineExceeded);
  CHECK(r->status.message().find("circuit is open") != std::string::npos);

  clock->advance(45s);
  f.dispatch("probe");  // waits too: the cooldown ends in 4 s
  CHECK(f.protocol->open_calls() == 0);
  clock->advance(4s);  // the circuit lets one probe through: the waiting call is it
  CHECK(f.registry->get_worker("w")->circuit == CircuitState::kHalfOpen);
  f.dispatch("after");  // waits: one probe at a time
  CHECK(f.protocol->open_ids() == std::vector<std::string>{"probe"});
  SECTION("a good probe closes the circuit") {
    f.protocol->answer_ok("probe");
    CHECK(f.registry->get_worker("w")->circuit == CircuitState::kClosed);
    CHECK(f.registry->get_worker("w")->consecutive_failures == 0);
    CHECK(f.protocol->open_ids() == std::vector<std::string>{"after"});
  }
  SECTION("a failed probe opens it for another cooldown") {
    f.protocol->answer_error("probe");
    CHECK(f.registry->get_worker("w")->circuit == CircuitState::kOpen);
    CHECK_FALSE(f.replies.get("after"));  // still waiting for the next probe
    clock->advance(60s);
    CHECK(f.registry->get_worker("w")->circuit == CircuitState::kHalfOpen);
    auto after = f.replies.get("after");
    REQUIRE(after);  // its deadline passed first
  }
}

TEST_CASE("an open circuit sends calls to the other workers", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  Fixture f(clock);
  f.add("spare", {}, 1);
  f.add("flaky", {}, 1);  // newest: chosen first
  for (int i = 0; i < 3; ++i) {
    std::string id = "f" + std::to_string(i);
    f.dispatch(id);
    CHECK(f.protocol->worker_of(id) == "flaky");
    f.protocol->answer_error(id);
  }
  f.dispatch("next");
  CHECK(f.protocol->worker_of("next") == "spare");
}

TEST_CASE("429 throttling and cancels do not count against the circuit", "[workers]") {
  Fixture f;
  f.add("w", {}, 1);
  for (int i = 0; i < 5; ++i) {
    std::string id = "t" + std::to_string(i);
    f.dispatch(id);
    WorkerReply r;
    r.status = Status::resource_exhausted("HTTP 429");
    r.retryable = true;
    f.protocol->answer(id, r);
  }
  auto w = *f.registry->get_worker("w");
  CHECK(w.circuit == CircuitState::kClosed);
  CHECK(w.consecutive_failures == 0);
  CHECK(w.failures == 5);
}

TEST_CASE("removing a worker leaves the calls only it could take waiting for another", "[workers]") {
  Fixture f;
  f.add("w", {"a"}, 1);
  f.dispatch("c1", {"a"});
  f.dispatch("c2", {"a"});
  REQUIRE(f.registry->remove_worker("w").ok());
  CHECK_FALSE(f.replies.get("c2"));
  f.add("w2", {"a"}, 1);
  CHECK(f.protocol->worker_of("c2") == "w2");
  f.protocol->answer_ok("c1");
  auto r = f.replies.get("c1");
  REQUIRE(r);
  CHECK(r->status.ok());
  CHECK(r->worker_id == "w");
}

TEST_CASE("raising max_concurrent starts waiting calls", "[workers]") {
  Fixture f;
  f.add("w", {}, 1);
  f.dispatch("c1");
  f.dispatch("c2");
  CHECK(f.protocol->open_calls() == 1);
  WorkerInfo w = f.registry->get_worker("w")->info;
  w.max_concurrent = 2;
  REQUIRE(f.registry->update_worker(w).ok());
  CHECK(f.protocol->open_calls() == 2);
}

TEST_CASE("rate-limit reports are kept per worker", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  Fixture f(clock);
  f.add("w1");
  f.add("w2");
  f.dispatch("c1");
  f.dispatch("c2");
  WorkerReply r;
  r.output = "x";
  r.envelope = Value::object({{"rate_limit", Value::object({{"remaining", 5}, {"limit", 10}, {"reset_ms", 250}})}});
  f.protocol->answer(f.protocol->open_ids()[0], r);
  WorkerReply zero;
  zero.output = R"({"rate_limit":{"remaining":0,"limit":0}})";  // no information: ignored
  f.protocol->answer("", zero);
  auto limits = f.registry->rate_limits();
  REQUIRE(limits.size() == 1);
  CHECK(limits[0].worker_id == "w2");
  CHECK(limits[0].remaining == 5);
  CHECK(limits[0].limit == 10);
  CHECK(limits[0].reset_ms == 250);
  CHECK(limits[0].updated_at_ms == clock->now_ms());
  f.dispatch("c3");
  WorkerReply inside;
  inside.output = R"({"rate_limit":{"remaining":1,"limit":2}})";  // NullBoiler: inside the output text
  f.protocol->answer("c3", inside);
  limits = f.registry->rate_limits();
  REQUIRE(limits.size() == 1);
  CHECK(limits[0].remaining == 1);
  CHECK(limits[0].limit == 2);
}

TEST_CASE("health checks open and close circuits", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  Fixture f(clock);
  f.add("w");
  f.protocol->set_health(Status::unavailable("down"));
  f.registry->check_health();
  f.registry->check_health();
  CHECK(f.registry->get_worker("w")->last_error == "health check: down");
  CHECK(f.registry->get_worker("w")->circuit == CircuitState::kClosed);
  f.registry->check_health();
  CHECK(f.registry->get_worker("w")->circuit == CircuitState::kOpen);
  f.protocol->set_health(Status());
  f.registry->check_health();  // skipped: still cooling down
  CHECK(f.registry->get_worker("w")->circuit == CircuitState::kOpen);
  clock->advance(60s);
  f.registry->check_health();
  CHECK(f.registry->get_worker("w")->circuit == CircuitState::kClosed);
  CHECK(f.registry->get_worker("w")->last_error.empty());
}

TEST_CASE("periodic health checks run on the clock", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  orch::WorkerRegistryOptions options;
  options.clock = clock;
  options.health_check_interval_ms = 30000;
  auto registry = std::make_shared<orch::WorkerRegistry>(options);
  auto protocol = std::make_shared<ManualProtocol>();
  REQUIRE(registry->register_protocol("manual", protocol).ok());
  REQUIRE(registry->add_worker(info("w", "manual://w", "manual")).ok());
  protocol->set_health(Status::unavailable("down"));
  // The clock is advanced at once, without waiting for the checker thread:
  // each tick must still lead to a check (a tick that meets a running check
  // runs another after it), none may be lost.
  for (int i = 0; i < 3; ++i) clock->advance(30s);
  for (int j = 0; j < 5000 && registry->get_worker("w")->consecutive_failures < 3; ++j) {
    std::this_thread::sleep_for(2ms);
  }
  CHECK(registry->get_worker("w")->consecutive_failures >= 3);
  CHECK(registry->get_worker("w")->circuit == CircuitState::kOpen);
}

TEST_CASE("a health check gate skips rounds, results are reported and applied elsewhere", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  std::atomic<bool> open_gate{false};
  std::atomic<int> asked{0};
  std::mutex mu;
  std::vector<orch::WorkerHealth> reported;
  orch::WorkerRegistryOptions options;
  options.clock = clock;
  options.health_check_interval_ms = 30000;
  options.failure_threshold = 100;
  options.health_check_gate = [&] {
    ++asked;
    return open_gate.load();
  };
  options.on_health_checked = [&](const std::vector<orch::WorkerHealth>& results) {
    std::lock_guard<std::mutex> lock(mu);
    reported.insert(reported.end(), results.begin(), results.end());
  };
  auto registry = std::make_shared<orch::WorkerRegistry>(options);
  auto protocol = std::make_shared<ManualProtocol>();
  REQUIRE(registry->register_protocol("manual", protocol).ok());
  REQUIRE(registry->add_worker(info("w", "manual://w", "manual")).ok());
  protocol->set_health(Status::unavailable("down"));
  // Closed gate: the rounds come, nothing is probed.
  for (int i = 0; i < 2; ++i) clock->advance(30s);
  for (int j = 0; j < 5000 && asked < 2; ++j) std::this_thread::sleep_for(2ms);
  REQUIRE(asked >= 2);
  CHECK(registry->get_worker("w")->consecutive_failures == 0);
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(reported.empty());
  }
  // Open gate: the next round probes and reports.
  open_gate = true;
  clock->advance(30s);
  for (int j = 0; j < 5000 && registry->get_worker("w")->consecutive_failures < 1; ++j) {
    std::this_thread::sleep_for(2ms);
  }
  CHECK(registry->get_worker("w")->consecutive_failures == 1);
  for (int j = 0; j < 5000; ++j) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!reported.empty()) break;
    }
    std::this_thread::sleep_for(2ms);
  }
  std::vector<orch::WorkerHealth> results;
  {
    std::lock_guard<std::mutex> lock(mu);
    results = reported;
  }
  REQUIRE(results.size() == 1);
  CHECK(results[0].worker_id == "w");
  CHECK(results[0].health.message() == "down");

  // Another registry takes the result as if it had probed. (Its own clock:
  // advancing this test's would start rounds of the first registry, which
  // report into `reported` from its thread.)
  auto other_clock = std::make_shared<orch::ManualClock>();
  Fixture other(other_clock);
  other.add("w");
  REQUIRE(other.registry->apply_health(results[0]).ok());
  CHECK(other.registry->get_worker("w")->consecutive_failures == 1);
  CHECK(other.registry->get_worker("w")->last_error == "health check: down");
  REQUIRE(other.registry->apply_health(orch::WorkerHealth{"w", Status()}).ok());
  CHECK(other.registry->get_worker("w")->consecutive_failures == 0);
  CHECK(other.registry->get_worker("w")->last_error.empty());
  CHECK(other.registry->apply_health(orch::WorkerHealth{"nobody", Status()}).code() == StatusCode::kNotFound);

  // A circuit open here stays open through the cooldown, as this registry's
  // own round would leave it (it does not probe such a worker), whatever
  // another process found.
  for (int i = 0; i < 3; ++i) REQUIRE(other.registry->apply_health(results[0]).ok());
  REQUIRE(other.registry->get_worker("w")->circuit == orch::CircuitState::kOpen);
  REQUIRE(other.registry->apply_health(orch::WorkerHealth{"w", Status()}).ok());
  CHECK(other.registry->get_worker("w")->circuit == orch::CircuitState::kOpen);
  CHECK(other.registry->get_worker("w")->consecutive_failures == 3);
  // Once the cooldown is over (half-open), a healthy result closes it.
  other_clock->advance(61s);
  REQUIRE(other.registry->apply_health(orch::WorkerHealth{"w", Status()}).ok());
  CHECK(other.registry->get_worker("w")->circuit == orch::CircuitState::kClosed);
  CHECK(other.registry->get_worker("w")->consecutive_failures == 0);
}

namespace {

// Probes take `probe_ms`; counts the probes that started.
class SlowProbeProtocol : public ManualProtocol {
 public:
  explicit SlowProbeProtocol(int probe_ms) : probe_ms_(probe_ms) {}
  Status probe(const WorkerInfo& w, std::chrono::milliseconds timeout) override {
    ++started;
    std::this_thread::sleep_for(std::chrono::milliseconds(probe_ms_));
    return ManualProtocol::probe(w, timeout);
  }
  std::atomic<int> started{0};

 private:
  int probe_ms_;
};

}  // namespace

TEST_CASE("destroying the registry waits for a health round in flight, whose callbacks then end", "[workers]") {
  auto clock = std::make_shared<orch::ManualClock>();
  // What the host's callbacks refer to: it goes right after the registry.
  struct HostState {
    std::atomic<bool> registry_gone{false};
    std::atomic<int> calls_after{0};
    std::atomic<int> reports{0};
  };
  auto host = std::make_unique<HostState>();
  HostState* state = host.get();
  orch::WorkerRegistryOptions options;
  options.clock = clock;
  options.health_check_interval_ms = 30000;
  options.health_check_gate = [state] {
    if (state->registry_gone) ++state->calls_after;
    return true;
  };
  options.on_health_checked = [state](const std::vector<orch::WorkerHealth>&) {
    if (state->registry_gone) ++state->calls_after;
    ++state->reports;
  };
  auto registry = std::make_unique<orch::WorkerRegistry>(options);
  auto protocol = std::make_shared<SlowProbeProtocol>(150);
  REQUIRE(registry->register_protocol("manual", protocol).ok());
  for (const char* id : {"w1", "w2", "w3"}) REQUIRE(registry->add_worker(info(id, std::string("manual://") + id, "manual")).ok());
  clock->advance(31s);  // a round starts on the registry's thread
  for (int i = 0; i < 5000 && protocol->started == 0; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(protocol->started == 1);
  registry.reset();  // mid-probe: waits for it; the round stops before the next worker
  state->registry_gone = true;
  CHECK(protocol->started == 1);
  std::this_thread::sleep_for(700ms);  // time enough for the rest of a round that went on
  CHECK(state->calls_after == 0);
  CHECK(protocol->started == 1);
}

TEST_CASE("destroying the registry fails waiting calls with Cancelled", "[workers]") {
  auto f = std::make_unique<Fixture>();
  auto protocol = f->protocol;
  Replies replies;
  f->add("w", {}, 1);
  f->registry->dispatch(f->request("c1"), replies.callback("c1"));
  f->registry->dispatch(f->request("c2"), replies.callback("c2"));
  f.reset();
  auto r = replies.get("c2");
  REQUIRE(r);
  CHECK(r->status.code() == StatusCode::kCancelled);
  CHECK(protocol->cancelled() == std::vector<std::string>{"c1"});
  protocol->answer_ok("c1");  // a late answer still reaches its caller
  REQUIRE(replies.get("c1"));
  CHECK(replies.get("c1")->worker_id == "w");
}

TEST_CASE("a protocol that answers twice is heard once", "[workers]") {
  struct Twice : orch::WorkerProtocol {
    void call(const WorkerInfo&, const WorkerRequest&, orch::Dispatcher::Callback done) override {
      WorkerReply r;
      r.output = "one";
      done(r);
      r.output = "two";
      done(r);
    }
  };
  Fixture f;
  REQUIRE(f.registry->register_protocol("twice", std::make_shared<Twice>()).ok());
  f.add("w", {}, 1, "twice");
  std::atomic<int> n{0};
  f.registry->dispatch(f.request("c1"), [&n](WorkerReply) { ++n; });
  CHECK(n == 1);
  CHECK(f.registry->get_worker("w")->in_flight == 0);
  CHECK(f.registry->get_worker("w")->calls == 1);
}

TEST_CASE("a call id names its step, attempt and turn", "[workers]") {
  CHECK(orch::make_call_id("step-1", 2, 3) == "step-1#2.3");
  CHECK(orch::step_of_call_id("step-1#2.3") == "step-1");
  CHECK(orch::step_of_call_id("step-1") == "step-1");
  CHECK(orch::step_of_call_id("").empty());
}
