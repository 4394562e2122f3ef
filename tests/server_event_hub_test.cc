// SPDX-License-Identifier: MIT
// EventHub: SSE streams wait per run; a publish wakes that run's streams only
// and is never missed between taking an epoch and waiting.
#include "event_hub.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "catch.h"

using namespace std::chrono_literals;
using orch::server::EventHub;

namespace {
// Waits (bounded) until `n` streams wait on `run`.
bool until_waiting(EventHub& hub, const std::string& run, int n) {
  for (int i = 0; i < 5000; ++i) {
    if (hub.waiting(run) == n) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}
}  // namespace

TEST_CASE("an event published between epoch() and wait() ends the wait at once", "[server][sse]") {
  EventHub hub;
  for (bool watched_before : {false, true}) {
    INFO(watched_before);
    std::thread other;
    if (watched_before) {  // another stream of the run is already waiting
      uint64_t e = hub.epoch("r");
      other = std::thread([&hub, e] { hub.wait("r", e, 10s); });
      REQUIRE(until_waiting(hub, "r", 1));
    }
    uint64_t seen = hub.epoch("r");
    hub.publish("r");
    auto started = std::chrono::steady_clock::now();
    hub.wait("r", seen, 30s);
    CHECK(std::chrono::steady_clock::now() - started < 10s);
    if (other.joinable()) other.join();
  }
}

TEST_CASE("a publish wakes the streams of its own run only", "[server][sse]") {
  EventHub hub;
  std::atomic<int> b_woke{0};
  std::thread b([&] {
    uint64_t e = hub.epoch("b");
    hub.wait("b", e, 30s);
    ++b_woke;
  });
  REQUIRE(until_waiting(hub, "b", 1));
  for (int i = 0; i < 100; ++i) hub.publish("a");
  CHECK(hub.waiting("b") == 1);  // still asleep: nothing happened to b
  CHECK(b_woke == 0);
  hub.publish("b");
  b.join();
  CHECK(b_woke == 1);
  CHECK(hub.waiting("b") == 0);
}

TEST_CASE("close() wakes every waiting stream", "[server][sse]") {
  EventHub hub;
  std::thread a([&] { hub.wait("a", hub.epoch("a"), 30s); });
  std::thread b([&] { hub.wait("b", hub.epoch("b"), 30s); });
  REQUIRE(until_waiting(hub, "a", 1));
  REQUIRE(until_waiting(hub, "b", 1));
  hub.close();
  a.join();
  b.join();
  CHECK(hub.closed());
}
