// SPDX-License-Identifier: MIT
// orch::graphviz: workflow pictures (shapes, labels, back edges, states),
// escaping of hostile names, and the size bound.
#include <chrono>
#include <string>

#include "catch.h"
#include "orch/graphviz.h"
#include "orch/workflow.h"
#include "render/graphviz/drawing.h"

namespace {

std::shared_ptr<const orch::Workflow> workflow_of(const std::string& json) {
  auto wf = orch::parse_workflow_json(json);
  REQUIRE(wf.ok());
  return *wf;
}

const char* kReviewLoop = R"({"nodes": {
    "write": {"type": "task", "prompt_template": "w"},
    "review": {"type": "agent", "prompt_template": "r"},
    "check": {"type": "route", "input": "state.v", "routes": {"approve": "__end__", "revise": "note"}},
    "note": {"type": "transform", "updates": {"n": 1}},
    "fan": {"type": "send", "items_key": "state.items", "target_node": "one"},
    "one": {"type": "task", "prompt_template": "x"},
    "sub": {"type": "subgraph", "workflow_id": "child_flow"},
    "ask": {"type": "interrupt", "message": "ok?"}},
  "edges": [["__start__", "write"], ["write", "review"], ["review", "check"],
            ["check:revise", "note"], ["note", "write"], ["check:approve", "__end__"],
            ["__start__", "fan"], ["fan", "sub"], ["sub", "ask"], ["ask", "__end__"]]})";

const orch::graphviz_internal::DrawNode& node_named(const orch::graphviz_internal::Drawing& d, const std::string& name) {
  for (const auto& n : d.nodes) {
    if (n.name == name) return n;
  }
  FAIL("no node " << name);
  return d.nodes.front();
}

std::string attribute(const orch::graphviz_internal::Attributes& a, const std::string& key) {
  for (const auto& [k, v] : a) {
    if (k == key) return v;
  }
  return "";
}

}  // namespace

TEST_CASE("nodes are shaped by type and send and subgraph are marked", "[graphviz]") {
  auto d = orch::graphviz_internal::describe_workflow(*workflow_of(kReviewLoop), {});
  CHECK(attribute(node_named(d, "write").attributes, "shape") == "box");
  CHECK(attribute(node_named(d, "review").attributes, "style") == "rounded");
  CHECK(attribute(node_named(d, "check").attributes, "shape") == "diamond");
  CHECK(attribute(node_named(d, "note").attributes, "shape") == "ellipse");
  CHECK(attribute(node_named(d, "ask").attributes, "shape") == "octagon");
  CHECK(attribute(node_named(d, "fan").attributes, "peripheries") == "2");
  CHECK(attribute(node_named(d, "sub").attributes, "shape") == "box3d");
  CHECK(attribute(node_named(d, "sub").attributes, "label").find("child_flow") != std::string::npos);
  CHECK(attribute(node_named(d, "__start__").attributes, "shape") == "circle");
  CHECK(attribute(node_named(d, "__end__").attributes, "shape") == "doublecircle");
}

TEST_CASE("conditional edges are labelled and the loop's back edge is dashed", "[graphviz]") {
  auto d = orch::graphviz_internal::describe_workflow(*workflow_of(kReviewLoop), {});
  bool revise = false, back = false, send = false, forward_plain = false;
  for (const auto& e : d.edges) {
    if (e.source == "check" && e.target == "note") revise = attribute(e.attributes, "label") == "revise";
    if (e.source == "note" && e.target == "write") back = attribute(e.attributes, "style") == "dashed";
    if (e.source == "fan" && e.target == "one") send = attribute(e.attributes, "style") == "dotted";
    if (e.source == "write" && e.target == "review") forward_plain = attribute(e.attributes, "style").empty();
  }
  CHECK(revise);
  CHECK(back);
  CHECK(send);
  CHECK(forward_plain);
}

TEST_CASE("node states fill nodes with their colour", "[graphviz]") {
  orch::SvgOptions options;
  options.node_states = {{"write", "completed"}, {"review", "running"}, {"note", "no-such-state"}};
  auto d = orch::graphviz_internal::describe_workflow(*workflow_of(kReviewLoop), options);
  CHECK(attribute(node_named(d, "write").attributes, "fillcolor") == orch::svg_state_colour("completed"));
  CHECK(attribute(node_named(d, "review").attributes, "style") == "rounded,filled");
  CHECK(attribute(node_named(d, "note").attributes, "fillcolor").empty());
  CHECK(attribute(node_named(d, "check").attributes, "fillcolor").empty());
}

TEST_CASE("workflow_svg renders an SVG with one titled group per node", "[graphviz]") {
  auto svg = orch::workflow_svg(*workflow_of(kReviewLoop));
  REQUIRE(svg.ok());
  CHECK(svg->find("<svg") != std::string::npos);
  CHECK(svg->find("<title>check</title>") != std::string::npos);
  CHECK(svg->find(">revise<") != std::string::npos);
  CHECK(svg->find("stroke-dasharray") != std::string::npos);  // the back edge
}

TEST_CASE("hostile node names and conditions stay text in the SVG", "[graphviz]") {
  const char* hostile = R"({"nodes": {
      "<script>alert(1)</script>": {"type": "route", "input": "state.x", "routes": {"\"/><script>x()</script>": "__end__"}},
      "a\\N\\G\\l": {"type": "transform", "updates": {}}},
    "edges": [["__start__", "<script>alert(1)</script>"],
              ["<script>alert(1)</script>:\"/><script>x()</script>", "__end__"],
              ["__start__", "a\\N\\G\\l"], ["a\\N\\G\\l", "__end__"]]})";
  auto svg = orch::workflow_svg(*workflow_of(hostile));
  REQUIRE(svg.ok());
  CHECK(svg->find("<script") == std::string::npos);
  CHECK(svg->find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  // Graphviz escapes (\N: the node name) are not expanded: the backslashes stay.
  CHECK(svg->find(">a\\N\\G\\l<") != std::string::npos);
  CHECK(orch::graphviz_internal::label_text("a\\N") == "a\\\\N");
}

TEST_CASE("a 10 000-node workflow is refused at once, not laid out", "[graphviz]") {
  std::string json = R"({"nodes": {)";
  for (int i = 0; i < 10000; ++i) json += (i ? "," : "") + std::string("\"n") + std::to_string(i) + "\": {\"type\": \"transform\", \"updates\": {}}";
  json += R"(}, "edges": [["__start__", "n0"])";
  for (int i = 1; i < 10000; ++i) json += ",[\"n" + std::to_string(i - 1) + "\",\"n" + std::to_string(i) + "\"]";
  json += R"(, ["n9999", "__end__"]]})";
  auto wf = workflow_of(json);
  auto start = std::chrono::steady_clock::now();
  auto svg = orch::workflow_svg(*wf);
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(svg.ok());
  CHECK(svg.status().code() == orch::StatusCode::kInvalidArgument);
  CHECK(svg.status().message().find("at most 1000") != std::string::npos);
  CHECK(took < std::chrono::seconds(1));
}

TEST_CASE("a 200-node workflow draws in well under a second", "[graphviz]") {
  std::string json = R"({"nodes": {)";
  for (int i = 0; i < 200; ++i) json += (i ? "," : "") + std::string("\"step_") + std::to_string(i) + "\": {\"type\": \"task\", \"prompt_template\": \"x\"}";
  json += R"(}, "edges": [["__start__", "step_0"])";
  for (int i = 1; i < 200; ++i) json += ",[\"step_" + std::to_string(i / 2) + "\",\"step_" + std::to_string(i) + "\"]";
  for (int i = 100; i < 200; ++i) json += ",[\"step_" + std::to_string(i) + "\",\"__end__\"]";
  json += "]}";
  auto wf = workflow_of(json);
  auto start = std::chrono::steady_clock::now();
  auto svg = orch::workflow_svg(*wf);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  REQUIRE(svg.ok());
  CHECK(svg->find("<title>step_199</title>") != std::string::npos);
  CHECK(took.count() < 1000);
}
