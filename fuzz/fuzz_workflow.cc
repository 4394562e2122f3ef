// SPDX-License-Identifier: MIT
// Fuzzes workflow parsing, validation, Mermaid export and legacy conversion.
#include <cstdint>
#include <string_view>

#include "legacy_steps.h"
#include "orch/workflow.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto v = orch::parse_json(text);
  if (!v.ok()) return 0;
  (void)orch::validate_workflow(*v);
  (void)orch::workflow_to_mermaid(*v);
  (void)orch::parse_workflow(*v);
  (void)orch::server::legacy_steps_to_workflow(*v);
  return 0;
}
