// SPDX-License-Identifier: MIT
#include <atomic>
#include <condition_variable>
#include <set>
#include <vector>

#include "catch.h"
#include "orch/clock.h"
#include "orch/id.h"

using namespace std::chrono_literals;

TEST_CASE("uuids are v4 and distinct", "[id]") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = orch::new_uuid();
    REQUIRE(orch::is_uuid(id));
    REQUIRE(id[14] == '4');
    REQUIRE(std::string("89ab").find(id[19]) != std::string::npos);
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
  CHECK_FALSE(orch::is_uuid("not-a-uuid"));
  CHECK_FALSE(orch::is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
  CHECK(orch::is_uuid("123E4567-E89B-12D3-A456-426614174000"));
}

TEST_CASE("manual clock fires timers in order without sleeping", "[clock]") {
  orch::ManualClock clock;
  std::vector<int> fired;
  auto t0 = clock.steady_now();
  clock.call_after(300ms, [&] { fired.push_back(3); });
  clock.call_after(100ms, [&] { fired.push_back(1); });
  auto id = clock.call_after(200ms, [&] { fired.push_back(2); });
  clock.call_after(100ms, [&] { fired.push_back(11); });  // tie: after the first 100 ms one
  CHECK(clock.cancel(id));
  CHECK_FALSE(clock.cancel(id));
  clock.advance(150ms);
  CHECK(fired == std::vector<int>{1, 11});
  CHECK(clock.steady_now() - t0 == 150ms);
  clock.advance(1s);
  CHECK(fired == std::vector<int>{1, 11, 3});
  CHECK(clock.pending_timers() == 0);
}

TEST_CASE("manual clock timers may set timers that come due in the same advance", "[clock]") {
  orch::ManualClock clock;
  std::vector<int64_t> at;
  auto start = clock.steady_now();
  clock.call_after(10ms, [&] {
    at.push_back((clock.steady_now() - start) / 1ms);
    clock.call_after(10ms, [&] { at.push_back((clock.steady_now() - start) / 1ms); });
  });
  clock.advance(100ms);
  CHECK(at == std::vector<int64_t>{10, 20});
  auto wall = clock.now_ms();
  clock.advance(5s);
  CHECK(clock.now_ms() - wall == 5000);
}

TEST_CASE("system clock fires a timer and can cancel one", "[clock]") {
  auto clock = orch::Clock::system();
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  std::atomic<bool> cancelled_fired{false};
  auto id = clock->call_after(1h, [&] { cancelled_fired = true; });
  clock->call_after(1ms, [&] {
    std::lock_guard<std::mutex> lock(mu);
    fired = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  CHECK(cv.wait_for(lock, 10s, [&] { return fired; }));
  CHECK(clock->cancel(id));
  CHECK_FALSE(cancelled_fired);
}
