// SPDX-License-Identifier: MIT
//
// Golden Mermaid output: each tests/data/mermaid/NAME.json must draw exactly
// as NAME.mmd (NullBoiler's format, plus our additions after the edges).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "catch.h"
#include "orch/workflow.h"

namespace {

const std::string kDir = std::string(ORCH_TEST_DATA_DIR) + "/mermaid";

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

TEST_CASE("mermaid output matches the golden files", "[workflow][mermaid]") {
  std::vector<std::filesystem::path> inputs;
  for (const auto& entry : std::filesystem::directory_iterator(kDir)) {
    if (entry.path().extension() == ".json") inputs.push_back(entry.path());
  }
  std::sort(inputs.begin(), inputs.end());
  REQUIRE(inputs.size() >= 5);
  for (const auto& input : inputs) {
    INFO(input.filename().string());
    auto definition = orch::parse_json(read_text(input));
    REQUIRE(definition.ok());
    std::filesystem::path golden = input;
    golden.replace_extension(".mmd");
    CHECK(orch::workflow_to_mermaid(*definition) == read_text(golden));
  }
}

TEST_CASE("mermaid of anything that is not a workflow is just the header", "[workflow][mermaid]") {
  for (const char* text : {"null", "[]", "\"x\"", R"({"nodes": {}})", R"({"edges": []})",
                           R"({"nodes": {}, "edges": {}})"}) {
    INFO(text);
    CHECK(orch::workflow_to_mermaid(*orch::parse_json(text)) == "graph TD\n");
  }
}

TEST_CASE("a builder workflow draws through workflow_to_definition", "[workflow][mermaid]") {
  orch::WorkflowBuilder b("drawn");
  b.add_function_node("work", [](const orch::NodeCall&) { return orch::NodeOutput(); })
      .add_edge(orch::kStartNode, "work")
      .add_edge("work", orch::kEndNode);
  auto wf = b.build();
  REQUIRE(wf.ok());
  CHECK(orch::workflow_to_mermaid(orch::workflow_to_definition(**wf)) ==
        "graph TD\n    __start__((Start))\n    work[work\\ntask]\n    __end__((End))\n"
        "    __start__ --> work\n    work --> __end__\n");
}

TEST_CASE("long breakpoint lists draw each node once, in one pass", "[workflow][mermaid]") {
  // 10 000 nodes, each named 20 times in interrupt_before: repeats used to be
  // found by scanning the names kept so far (10^9 comparisons here).
  orch::Value nodes = orch::Value::object();
  orch::Value breakpoints = orch::Value::array();
  for (int i = 0; i < 10000; ++i) nodes.set("n" + std::to_string(i), orch::Value::object());
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 10000; ++i) breakpoints.push_back("n" + std::to_string(i));
  }
  breakpoints.push_back("ghost");
  std::string text = orch::workflow_to_mermaid(orch::Value::object(
      {{"nodes", nodes}, {"edges", orch::Value::array()}, {"interrupt_before", breakpoints}}));
  std::string marker = "class n0,n1,";
  size_t at = text.find(marker);
  REQUIRE(at != std::string::npos);
  std::string line = text.substr(at, text.find('\n', at) - at);
  CHECK(std::count(line.begin(), line.end(), ',') == 9999);
  CHECK(line.find("ghost") == std::string::npos);
  CHECK(line.substr(line.find("n9998,")) == "n9998,n9999 interrupt_before");
}
