// SPDX-License-Identifier: MIT
// Fuzzes the JSON parser: any input either parses and round-trips, or is an error.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "orch/value.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto v = orch::parse_json(text);
  if (!v.ok()) return 0;
  // What we print must parse back to an equal value.
  std::string out = v->to_json();
  auto again = orch::parse_json(out);
  if (!again.ok()) std::abort();
  if (!(v->to_json() == again->to_json())) std::abort();
  (void)v->find_path("a.0.b");
  return 0;
}
