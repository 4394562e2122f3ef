// SPDX-License-Identifier: MIT
//
// The workflow corpus: every tests/data/workflows/*.json is validated and
// compared with its entry in expected.json ({valid, issues: [{type, node?,
// key?, warning?}]}, issues in the exact order validate_workflow returns them).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "catch.h"
#include "orch/workflow.h"

namespace {

const std::string kDir = std::string(ORCH_TEST_DATA_DIR) + "/workflows";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> corpus_files() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kDir)) {
    std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".json" && name != "expected.json") names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

orch::Value expected_results() {
  auto parsed = orch::parse_json(read_text(kDir + "/expected.json"));
  REQUIRE(parsed.ok());
  return *parsed;
}

std::string describe(const orch::ValidationIssue& i) {
  return i.type + "|" + i.node + "|" + i.key + (i.warning ? "|warning" : "");
}

std::string describe(const orch::Value& e) {
  return e["type"].get_string("") + "|" + e["node"].get_string("") + "|" + e["key"].get_string("") +
         (e["warning"].get_bool(false) ? "|warning" : "");
}

}  // namespace

TEST_CASE("the corpus is large and every file has an expected result", "[workflow][corpus]") {
  orch::Value expected = expected_results();
  std::vector<std::string> files = corpus_files();
  CHECK(files.size() >= 40);
  for (const auto& name : files) {
    INFO(name);
    CHECK(expected.find(name) != nullptr);
  }
  for (const auto& [name, entry] : expected.as_object()) {
    INFO(name);
    CHECK(std::find(files.begin(), files.end(), name) != files.end());
  }
}

TEST_CASE("every corpus file validates as expected", "[workflow][corpus]") {
  orch::Value expected = expected_results();
  for (const auto& name : corpus_files()) {
    const orch::Value* entry = expected.find(name);
    if (entry == nullptr) continue;  // reported by the test above
    INFO(name);
    auto issues = orch::validate_workflow_json(read_text(kDir + "/" + name));
    std::vector<std::string> got;
    for (const auto& i : issues) got.push_back(describe(i));
    std::vector<std::string> want;
    for (const auto& e : (*entry)["issues"].as_array()) want.push_back(describe(e));
    CHECK(got == want);
    CHECK(orch::workflow_is_valid(issues) == (*entry)["valid"].as_bool());
    for (const auto& i : issues) {
      CHECK_FALSE(i.message.empty());
    }
  }
}

TEST_CASE("the corpus covers every validation type", "[workflow][corpus]") {
  orch::Value expected = expected_results();
  std::set<std::string> seen;
  for (const auto& [name, entry] : expected.as_object()) {
    for (const auto& e : entry["issues"].as_array()) seen.insert(e["type"].as_string());
  }
  // duplicate_node cannot come from JSON (an object cannot repeat a key); the
  // builder tests cover it.
  for (const char* type : {"parse_error",           "missing_field",         "invalid_field",
                           "invalid_edge",          "invalid_node_name",     "unknown_node_type",
                           "unknown_reducer",       "nodes_in_edges_exist",  "duplicate_edge",
                           "unreachable_node",      "end_unreachable",       "no_path_to_end",
                           "unintentional_cycle",   "undefined_state_key",   "invalid_route_target",
                           "missing_route_edge",    "invalid_route_default", "missing_send_target",
                           "invalid_send_target",   "missing_items_key",     "missing_workflow_id",
                           "unknown_interrupt_node"}) {
    INFO(type);
    CHECK(seen.count(type) == 1);
  }
}

TEST_CASE("every parsable corpus file parses, draws and round-trips", "[workflow][corpus]") {
  for (const auto& name : corpus_files()) {
    INFO(name);
    std::string text = read_text(kDir + "/" + name);
    auto wf = orch::parse_workflow_json(text);
    auto issues = orch::validate_workflow_json(text);
    bool fatal = issues.size() == 1 && !issues[0].warning &&
                 (issues[0].type == "parse_error" || issues[0].type == "missing_field");
    CHECK(wf.ok() == !fatal);
    if (!wf.ok()) {
      CHECK(wf.status().code() == orch::StatusCode::kInvalidArgument);
      continue;
    }
    CHECK((*wf)->nodes.size() == (*wf)->definition["nodes"].size());
    std::string mermaid = orch::workflow_to_mermaid((*wf)->definition);
    CHECK(mermaid.rfind("graph TD\n    __start__((Start))\n", 0) == 0);
    // Writing the typed workflow and reading it back changes nothing more.
    orch::Value once = orch::workflow_to_definition(**wf);
    auto again = orch::parse_workflow(once);
    REQUIRE(again.ok());
    CHECK(orch::workflow_to_definition(**again) == once);
    // The typed checks agree with the JSON ones, apart from what only the
    // reader sees (fields of the wrong type, malformed edges).
    std::vector<std::string> from_json;
    for (const auto& i : issues) {
      if (i.type == "invalid_field" || i.key.rfind("edges[", 0) == 0) continue;
      from_json.push_back(describe(i));
    }
    std::vector<std::string> typed;
    for (const auto& i : orch::validate_workflow(**wf)) typed.push_back(describe(i));
    CHECK(typed == from_json);
  }
}
