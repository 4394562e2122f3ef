// SPDX-License-Identifier: MIT
// The engine's node result cache (lib/engine/result_cache.h): bounded, least
// recently used first out, expired entries dropped (issue: hardening).
#include <chrono>

#include "catch.h"
#include "engine/result_cache.h"

using orch::internal::NodeOutcome;
using orch::internal::ResultCache;
using namespace std::chrono_literals;

namespace {
NodeOutcome outcome(const char* text) {
  NodeOutcome o;
  o.updates.push_back(orch::Value::object({{"out", text}}));
  return o;
}
}  // namespace

TEST_CASE("the result cache keeps at most its capacity, dropping the least recently used", "[cache][hardening]") {
  ResultCache cache(2);
  const orch::SteadyTime now{};
  const orch::SteadyTime later = now + 1h;
  cache.put("a", outcome("A"), later);
  cache.put("b", outcome("B"), later);
  REQUIRE(cache.get("a", now));  // a is now the most recent
  cache.put("c", outcome("C"), later);
  CHECK(cache.size() == 2);
  CHECK(cache.get("a", now));
  CHECK_FALSE(cache.get("b", now));  // the least recently used went
  CHECK(cache.get("c", now)->updates.front()["out"].as_string() == "C");
  // A hundred thousand distinct prompts never grow it past its capacity.
  for (int i = 0; i < 100000; ++i) cache.put("k" + std::to_string(i), outcome("x"), later);
  CHECK(cache.size() == 2);
}

TEST_CASE("an expired cache entry is a miss and is dropped", "[cache]") {
  ResultCache cache(10);
  const orch::SteadyTime now{};
  cache.put("a", outcome("A"), now + 5s);
  CHECK(cache.get("a", now + 4s));
  CHECK_FALSE(cache.get("a", now + 5s));
  CHECK(cache.size() == 0);
}
