// SPDX-License-Identifier: MIT
//
// The smallest orch program: parse a JSON document into an orch::Value, change
// it, and print it back. Copies share storage, so snapshots are cheap.
#include <cstdio>

#include "orch/orch.h"

int main() {
  orch::Result<orch::Value> state = orch::parse_json(R"({"topic":"llamas","drafts":[]})");
  if (!state.ok()) {
    std::fprintf(stderr, "%s\n", state.status().to_string().c_str());
    return 1;
  }
  orch::Value snapshot = *state;  // O(1): shares storage with `state`
  (*state)["drafts"].push_back("first draft");
  std::printf("orch %s\nbefore: %s\nafter:  %s\n", orch::version(), snapshot.to_json().c_str(),
              state->to_json().c_str());
  return 0;
}
