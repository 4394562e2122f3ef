// SPDX-License-Identifier: MIT
// Fuzzes template compilation and rendering against a fixed state.
#include <cstdint>
#include <string_view>

#include "orch/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const orch::Value state = *orch::parse_json(
      R"({"x": "hi", "n": 3, "list": [1, {"a": "b"}], "obj": {"k": [true, null]}, "__config": {"c": 1}})");
  static const orch::Value input = *orch::parse_json(R"({"topic": "t"})");
  static const orch::Value item = *orch::parse_json(R"({"id": 7})");
  std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t offset = 0;
  auto t = orch::Template::compile(text, &offset);
  (void)orch::Template::list_state_references(text);
  if (!t.ok()) return 0;
  orch::TemplateContext ctx;
  ctx.state = &state;
  ctx.input = &input;
  ctx.item = &item;
  ctx.attempt = 1;
  ctx.store = [](std::string_view, std::string_view) -> orch::Result<orch::Value> { return orch::Value("s"); };
  (void)t->render(ctx);
  return 0;
}
