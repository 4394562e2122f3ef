// SPDX-License-Identifier: MIT
// CallPool and ReplyScope: the thread hand-offs the HTTP call path saves.
#include "orch/dispatcher.h"
#include "workers/call_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "catch.h"

using namespace std::chrono_literals;
using orch::internal::CallPool;
using orch::ReplyScope;

namespace {
// Waits (bounded) until `done` is true.
bool until(const std::atomic<bool>& done) {
  for (int i = 0; i < 5000 && !done; ++i) std::this_thread::sleep_for(1ms);
  return done;
}
}  // namespace

TEST_CASE("a task posted from a pool task runs next on the same thread, after it", "[call_pool]") {
  std::atomic<bool> done{false};
  std::atomic<bool> first_returned{false};
  std::thread::id first_thread, second_thread;
  bool ran_after_first = false;
  CallPool pool(4);  // last: joined before what its tasks use goes
  pool.post([&] {
    first_thread = std::this_thread::get_id();
    pool.post([&] {
      second_thread = std::this_thread::get_id();
      ran_after_first = first_returned;
      done = true;
    });
    std::this_thread::sleep_for(20ms);  // another thread would have taken it by now
    first_returned = true;
  });
  REQUIRE(until(done));
  CHECK(second_thread == first_thread);
  CHECK(ran_after_first);
}

TEST_CASE("only one posted task waits for its poster: a second goes to another thread", "[call_pool]") {
  std::atomic<bool> released{false};
  std::atomic<bool> done{false};
  CallPool pool(4);
  pool.post([&] {
    pool.post([] {});  // kept for this thread
    pool.post([&] { released = true; });  // must not wait for this task to end
    for (int i = 0; i < 5000 && !released; ++i) std::this_thread::sleep_for(1ms);
    done = true;
  });
  REQUIRE(until(done));
  CHECK(released);
}

TEST_CASE("deferred calls run in order once the outermost scope ends, without nesting", "[call_pool]") {
  std::function<void()> outside = [] {};
  CHECK_FALSE(ReplyScope::defer(outside));  // no scope: the caller sends it itself

  std::vector<int> order;
  int depth = 0;
  int max_depth = 0;
  {
    ReplyScope scope;
    for (int i = 0; i < 3; ++i) {
      std::function<void()> call = [&, i] {
        ++depth;
        max_depth = std::max(max_depth, depth);
        order.push_back(i);
        if (i < 2) {
          // A call that leads to another, as a dispatcher answering at once does.
          ReplyScope nested;
          std::function<void()> next = [&, i] { order.push_back(10 + i); };
          REQUIRE(ReplyScope::defer(next));
        }
        --depth;
      };
      REQUIRE(ReplyScope::defer(call));
    }
    CHECK(order.empty());  // nothing is sent inside the scope
  }
  CHECK(order == std::vector<int>{0, 1, 2, 10, 11});
  CHECK(max_depth == 1);
  std::function<void()> after = [] {};
  CHECK_FALSE(ReplyScope::defer(after));
}
