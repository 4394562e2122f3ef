// SPDX-License-Identifier: MIT
//
// Small helpers for tests over real HTTP: the JSON body of an answer, and
// polling for a condition another thread brings about (a generous bound, so
// nothing is timed: a slow machine only waits longer).
#pragma once

#include <httplib.h>

#include <chrono>
#include <thread>

#include "catch.h"
#include "orch/value.h"

namespace orch::testing {

// The answer's body parsed as JSON; REQUIREs an answer and valid JSON.
inline Value json_body(const httplib::Result& r) {
  REQUIRE(r);
  auto v = parse_json(r->body);
  REQUIRE(v.ok());
  return *v;
}

// GET `path` as JSON; null when there is no answer, not a 200, or not JSON
// (for polling a server that may be restarting).
inline Value get_json(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path.c_str());
  if (!r || r->status != 200) return Value();
  auto parsed = parse_json(r->body);
  return parsed.ok() ? *parsed : Value();
}

// Checks `done()` every 10 ms until it holds (true) or about 20 s passed (false).
template <typename Pred>
bool eventually(Pred done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

}  // namespace orch::testing
