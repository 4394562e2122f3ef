// SPDX-License-Identifier: MIT
#include "orch/state_path.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.h"
#include "orch/value.h"

using orch::find_state_path;
using orch::route_value_string;
using orch::StatePath;
using orch::StatePrefix;
using orch::StatusCode;
using orch::Value;

namespace {

Value sample_state() {
  auto parsed = orch::parse_json(R"({
    "a": {"b": [{"c": 1}, {"c": 2}, {"c": 3}]},
    "list": [10, 20, 30],
    "empty": [],
    "grid": [[1, 2], [3, 4]],
    "obj": {"0": "zero-key", "": "empty-key"},
    "state": {"x": "nested-state"},
    "s": "text",
    "n": null
  })");
  REQUIRE(parsed.ok());
  return *parsed;
}

// What a lookup found, as JSON text, or "<missing>".
std::string show(const Value* v) { return v == nullptr ? "<missing>" : v->to_json(); }

}  // namespace

TEST_CASE("state paths find values in both forms", "[state_path]") {
  const Value state = sample_state();
  struct Case {
    const char* path;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"a.b.0.c", "1"},
      {"state.a.b.2.c", "3"},
      {"a.b[1].c", "2"},
      {"a.b[-1].c", "3"},
      {"list[0]", "10"},
      {"list[-1]", "30"},
      {"list.2", "30"},
      {"grid[1].0", "3"},
      {"grid.1[-1]", "4"},
      {"grid[0].[1]", "2"},                   // a bare [N] segment indexes the current value
      {"obj.0", "\"zero-key\""},              // "0" on an object is a key
      {"obj.", "\"empty-key\""},              // an empty segment is the key ""
      {"state.state.x", "\"nested-state\""},  // the prefix is stripped once
      {"s", "\"text\""},
      {"n", "null"},
      {"", state.to_json()},  // the empty path is the root
      // Not found.
      {"missing", "<missing>"},
      {"a.missing.c", "<missing>"},
      {"list.3", "<missing>"},
      {"list[3]", "<missing>"},
      {"list.-1", "<missing>"},  // negative indices only in brackets
      {"empty[-1]", "<missing>"},
      {"empty[0]", "<missing>"},
      {"s.x", "<missing>"},
      {"s[0]", "<missing>"},  // a string is not an array
      {"a[0]", "<missing>"},  // an object is not an array
      {"list.x", "<missing>"},
      {"n.x", "<missing>"},
      {"list.99999999999999999999", "<missing>"},
  };
  for (const Case& c : cases) {
    INFO("path: " << c.path);
    CHECK(show(find_state_path(state, c.path)) == c.want);
    auto compiled = StatePath::compile(c.path);
    REQUIRE(compiled.ok());
    CHECK(show(compiled->find(state)) == c.want);
  }
}

TEST_CASE("the state prefix is optional and can be kept", "[state_path]") {
  const Value state = sample_state();
  CHECK(orch::strip_state_prefix("state.a.b") == "a.b");
  CHECK(orch::strip_state_prefix("state.state.x") == "state.x");
  CHECK(orch::strip_state_prefix("statex") == "statex");
  CHECK(orch::strip_state_prefix("state") == "state");
  CHECK(orch::strip_state_prefix("a.state.b") == "a.state.b");

  CHECK(show(find_state_path(state, "state.x", StatePrefix::kKeep)) == "\"nested-state\"");
  CHECK(show(find_state_path(state, "state.x", StatePrefix::kStrip)) == "<missing>");
  CHECK(show(find_state_path(state, "state.s", StatePrefix::kKeep)) == "<missing>");
  auto kept = StatePath::compile("state.x", StatePrefix::kKeep);
  REQUIRE(kept.ok());
  CHECK(kept->text() == "state.x");
  CHECK(show(kept->find(state)) == "\"nested-state\"");
  auto stripped = StatePath::compile("state.s");
  REQUIRE(stripped.ok());
  CHECK(stripped->text() == "s");
}

TEST_CASE("malformed bracket indices are invalid paths", "[state_path]") {
  const Value state = sample_state();
  for (const char* path :
       {"list[x]", "list[ 0]", "list[0 ]", "list[-2]", "list[]", "list[0", "list[0]x", "grid[0][1]",
        "list[+1]", "list[1.0]", "list[", "a.b[99999999999999999999]"}) {
    INFO("path: " << path);
    CHECK(find_state_path(state, path) == nullptr);
    auto compiled = StatePath::compile(path);
    REQUIRE_FALSE(compiled.ok());
    CHECK(compiled.status().code() == StatusCode::kInvalidArgument);
    CHECK(compiled.status().message().find(path) != std::string::npos);
  }
  // A ']' without '[' is an ordinary key character.
  Value odd = Value::object({{"a]", 7}});
  CHECK(show(find_state_path(odd, "a]")) == "7");
}

TEST_CASE("compiled paths expose their segments", "[state_path]") {
  auto path = StatePath::compile("state.a.b[2].3.c[-1].[0]");
  REQUIRE(path.ok());
  const auto& segs = path->segments();
  REQUIRE(segs.size() == 5);
  using Index = StatePath::Segment::Index;
  CHECK(segs[0].key == "a");
  CHECK(segs[0].index == Index::kNone);
  CHECK_FALSE(segs[0].key_is_index);
  CHECK(segs[1].key == "b");
  CHECK(segs[1].index == Index::kAt);
  CHECK(segs[1].at == 2);
  CHECK(segs[2].key_is_index);
  CHECK(segs[2].key_index == 3);
  CHECK(segs[3].index == Index::kLast);
  CHECK(segs[3].key == "c");
  CHECK_FALSE(segs[4].has_key);
  CHECK(segs[4].index == Index::kAt);
  CHECK(segs[4].at == 0);
  CHECK(StatePath().empty());
  CHECK_FALSE(path->empty());
}

TEST_CASE("a compiled path is reusable across values", "[state_path]") {
  auto path = StatePath::compile("state.items[-1].name");
  REQUIRE(path.ok());
  Value s1 = Value::object(
      {{"items", Value::array({Value::object({{"name", "a"}}), Value::object({{"name", "b"}})})}});
  Value s2 = Value::object({{"items", Value::array({Value::object({{"name", "c"}})})}});
  Value s3 = Value::object({{"items", Value::array()}});
  CHECK(show(path->find(s1)) == "\"b\"");
  CHECK(show(path->find(s2)) == "\"c\"");
  CHECK(show(path->find(s3)) == "<missing>");
  CHECK(show(path->find(Value(5))) == "<missing>");
  // The pointer is into the value itself, not a copy.
  CHECK(path->find(s1) == &s1["items"].as_array()[1]["name"]);
}

TEST_CASE("route values stringify per the spec", "[state_path][route]") {
  struct Case {
    Value value;
    const char* want;
  };
  const std::vector<Case> cases = {
      {Value(true), "true"},
      {Value(false), "false"},
      {Value(0), "0"},
      {Value(-12), "-12"},
      {Value(std::numeric_limits<int64_t>::max()), "9223372036854775807"},
      {Value(std::numeric_limits<int64_t>::min()), "-9223372036854775808"},
      {Value(2.0), "2"},
      {Value(-3.0), "-3"},
      {Value(0.5), "0.5"},
      {Value(0.1), "0.1"},
      {Value(-0.0), "0"},
      {Value(1e20), "100000000000000000000"},
      {Value(1.5e-7), "0.00000015"},
      {Value(std::numeric_limits<double>::infinity()), "null"},
      {Value(std::numeric_limits<double>::quiet_NaN()), "null"},
      {Value("approve"), "approve"},
      {Value("say \"hi\"\nnow"), "say \"hi\"\nnow"},
      {Value("héllo ✓"), "héllo ✓"},
      {Value(""), ""},
      {Value(), "null"},
      {Value::array({1, "a"}), "[1,\"a\"]"},
      {Value::object({{"a", 1}}), "{\"a\":1}"},
      {Value::object({}), "{}"},
  };
  for (const Case& c : cases) {
    INFO("value: " << c.value.to_json());
    CHECK(route_value_string(c.value) == c.want);
  }
}
