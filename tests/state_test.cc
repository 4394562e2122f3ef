// SPDX-License-Identifier: MIT
#include <string>
#include <vector>

#include "catch.h"
#include "orch/state.h"

using orch::ReducerKind;
using orch::Value;

namespace {

Value J(const char* text) {
  auto v = orch::parse_json(text);
  REQUIRE(v.ok());
  return *v;
}

struct ReducerCase {
  const char* name;
  ReducerKind reducer;
  const char* old_json;  // nullptr: key absent
  const char* update_json;
  const char* expected_json;  // nullptr: an error is expected
};

orch::StateKey decl(const char* name, const char* type, ReducerKind reducer, bool ephemeral) {
  orch::StateKey key;
  key.name = name;
  key.type = type;
  key.reducer = reducer;
  key.ephemeral = ephemeral;
  return key;
}

}  // namespace

TEST_CASE("reducer table", "[state][reducers]") {
  using R = ReducerKind;
  const std::vector<ReducerCase> cases = {
      {"last_value absent", R::kLastValue, nullptr, "1", "1"},
      {"last_value replaces any type", R::kLastValue, "[1]", "\"x\"", "\"x\""},
      {"append to absent starts a list", R::kAppend, nullptr, "1", "[1]"},
      {"append array to absent spreads", R::kAppend, nullptr, "[1,2]", "[1,2]"},
      {"append to null starts a list", R::kAppend, "null", "\"a\"", "[\"a\"]"},
      {"append scalar", R::kAppend, "[1]", "2", "[1,2]"},
      {"append array spreads", R::kAppend, "[1]", "[2,[3]]", "[1,2,[3]]"},
      {"append object", R::kAppend, "[]", "{\"a\":1}", "[{\"a\":1}]"},
      {"append to string is an error", R::kAppend, "\"s\"", "1", nullptr},
      {"append to object is an error", R::kAppend, "{}", "1", nullptr},
      {"merge into absent", R::kMerge, nullptr, "{\"a\":1}", "{\"a\":1}"},
      {"merge into null", R::kMerge, "null", "{\"a\":1}", "{\"a\":1}"},
      {"merge deep", R::kMerge, "{\"a\":{\"x\":1,\"y\":[1]},\"b\":2}", "{\"a\":{\"y\":[2],\"z\":3}}",
       "{\"a\":{\"x\":1,\"y\":[2],\"z\":3},\"b\":2}"},
      {"merge replaces object with scalar", R::kMerge, "{\"a\":{\"x\":1}}", "{\"a\":5}", "{\"a\":5}"},
      {"merge non-object update is an error", R::kMerge, "{}", "[1]", nullptr},
      {"merge into array is an error", R::kMerge, "[1]", "{\"a\":1}", nullptr},
      {"add to absent", R::kAdd, nullptr, "5", "5"},
      {"add to null", R::kAdd, "null", "5", "5"},
      {"add ints stays int", R::kAdd, "2", "3", "5"},
      {"add int and double", R::kAdd, "2", "0.5", "2.5"},
      {"add doubles", R::kAdd, "1.5", "1.5", "3.0"},
      {"add big ints exact", R::kAdd, "9007199254740993", "2", "9007199254740995"},
      {"add overflow is an error", R::kAdd, "9223372036854775807", "1", nullptr},
      {"add negative overflow is an error", R::kAdd, "-9223372036854775808", "-1", nullptr},
      {"add string update is an error", R::kAdd, "1", "\"2\"", nullptr},
      {"add to string is an error", R::kAdd, "\"1\"", "2", nullptr},
      {"add bool is an error", R::kAdd, "1", "true", nullptr},
      {"min absent", R::kMin, nullptr, "3", "3"},
      {"min keeps smaller", R::kMin, "2", "3", "2"},
      {"min takes smaller", R::kMin, "3", "2", "2"},
      {"min mixed keeps winner's type", R::kMin, "2", "2.5", "2"},
      {"min exact near 2^63", R::kMin, "9223372036854775807", "9223372036854775806",
       "9223372036854775806"},
      {"min non-number is an error", R::kMin, "1", "null", nullptr},
      {"max takes larger", R::kMax, "2", "3.5", "3.5"},
      {"max keeps larger", R::kMax, "10", "3", "10"},
      {"max to array is an error", R::kMax, "[1]", "3", nullptr},
      {"add_messages to absent", R::kAddMessages, nullptr, "{\"id\":\"a\",\"text\":\"hi\"}",
       "[{\"id\":\"a\",\"text\":\"hi\"}]"},
      {"add_messages replaces by id", R::kAddMessages, "[{\"id\":\"a\",\"t\":1},{\"id\":\"b\",\"t\":2}]",
       "{\"id\":\"a\",\"t\":3}", "[{\"id\":\"a\",\"t\":3},{\"id\":\"b\",\"t\":2}]"},
      {"add_messages appends new ids", R::kAddMessages, "[{\"id\":\"a\"}]", "[{\"id\":\"b\"},{\"id\":\"c\"}]",
       "[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]"},
      {"add_messages removes", R::kAddMessages, "[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"a\"}]",
       "{\"id\":\"a\",\"remove\":true}", "[{\"id\":\"b\"}]"},
      {"add_messages remove of unknown id", R::kAddMessages, "[{\"id\":\"a\"}]",
       "{\"id\":\"z\",\"remove\":true}", "[{\"id\":\"a\"}]"},
      {"add_messages scalar update is an error", R::kAddMessages, "[]", "5", nullptr},
      {"add_messages non-object message is an error", R::kAddMessages, "[]", "[\"x\"]", nullptr},
      {"add_messages into string is an error", R::kAddMessages, "\"x\"", "{\"id\":\"a\"}", nullptr},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    Value old_value = c.old_json ? J(c.old_json) : Value();
    auto result = orch::apply_reducer(c.reducer, c.old_json ? &old_value : nullptr, J(c.update_json));
    if (c.expected_json == nullptr) {
      CHECK_FALSE(result.ok());
      if (!result.ok()) CHECK(result.status().code() == orch::StatusCode::kInvalidArgument);
    } else {
      REQUIRE(result.ok());
      CHECK(result->to_json() == std::string(c.expected_json));
    }
  }
}

TEST_CASE("add_messages gives id-less messages fresh unique ids", "[state][reducers]") {
  Value list = J("[{\"id\":\"msg_1\"}]");
  auto r = orch::apply_reducer(ReducerKind::kAddMessages, &list, J("[{\"text\":\"a\"},{\"text\":\"b\",\"id\":7}]"));
  REQUIRE(r.ok());
  REQUIRE(r->size() == 3);
  std::string id1 = (*r->at(1))["id"].as_string();
  std::string id2 = (*r->at(2))["id"].as_string();
  CHECK(id1.rfind("msg_", 0) == 0);
  CHECK(id1 != id2);
  CHECK(id1 != "msg_1");
  CHECK((*r->at(1))["text"].as_string() == "a");
}

TEST_CASE("apply_updates uses the schema, overwrite bypasses it", "[state]") {
  orch::Workflow wf;
  wf.state_schema = {decl("items", "array", ReducerKind::kAppend, false),
                     decl("total", "number", ReducerKind::kAdd, false)};
  wf.reindex();
  Value state = J("{\"items\":[1],\"total\":1,\"name\":\"a\"}");
  REQUIRE(orch::apply_updates(&state, J("{\"items\":[2],\"total\":2,\"name\":\"b\",\"new\":true}"), &wf).ok());
  CHECK(state.to_json() == "{\"items\":[1,2],\"total\":3,\"name\":\"b\",\"new\":true}");
  REQUIRE(orch::apply_updates(&state, J("{\"items\":{\"__overwrite\":true,\"value\":[]}}"), &wf).ok());
  CHECK(state["items"].to_json() == "[]");
  // "__overwrite": false is an ordinary value for the reducer.
  REQUIRE(orch::apply_updates(&state, J("{\"items\":{\"__overwrite\":false}}"), &wf).ok());
  CHECK(state["items"].to_json() == "[{\"__overwrite\":false}]");
  REQUIRE(orch::apply_updates(&state, J("{\"name\":{\"__overwrite\":true}}"), &wf).ok());
  CHECK(state["name"].is_null());
}

TEST_CASE("a failing update leaves the state unchanged", "[state]") {
  orch::Workflow wf;
  wf.state_schema = {decl("total", "number", ReducerKind::kAdd, false)};
  wf.reindex();
  Value state = J("{\"total\":1,\"a\":1}");
  Value before = state;
  orch::Status s = orch::apply_updates(&state, J("{\"a\":2,\"total\":\"x\"}"), &wf);
  CHECK(s.code() == orch::StatusCode::kInvalidArgument);
  CHECK(s.message().find("total") != std::string::npos);
  CHECK(state == before);
  CHECK_FALSE(orch::apply_updates(&state, J("[1]"), &wf).ok());
}

TEST_CASE("applying an update leaves untouched values shared", "[state]") {
  Value big = Value::array();
  for (int i = 0; i < 10000; ++i) big.push_back(i);
  Value state = Value::object({{"big", big}, {"n", 1}});
  Value snapshot = state;
  REQUIRE(orch::apply_updates(&state, J("{\"n\":2}"), nullptr).ok());
  CHECK(state["big"].shares_storage_with(snapshot["big"]));
  CHECK(snapshot["n"].as_int() == 1);
}

TEST_CASE("initial state from input and schema", "[state]") {
  orch::Workflow wf;
  wf.state_schema = {decl("topic", "string", ReducerKind::kLastValue, false),
                     decl("notes", "array", ReducerKind::kAppend, false),
                     decl("count", "number", ReducerKind::kAdd, false),
                     decl("ok", "boolean", ReducerKind::kLastValue, false),
                     decl("meta", "object", ReducerKind::kMerge, false),
                     decl("any", "", ReducerKind::kLastValue, false)};
  wf.reindex();
  Value s = orch::initial_state(J("{\"topic\":\"ai\",\"extra\":1}"), wf);
  CHECK(s.to_json() == "{\"topic\":\"ai\",\"notes\":[],\"count\":0,\"ok\":false,\"meta\":{},\"any\":null}");
  orch::Workflow no_schema;
  CHECK(orch::initial_state(J("{\"a\":1}"), no_schema).to_json() == "{\"a\":1}");
  CHECK(orch::initial_state(J("[1]"), no_schema).to_json() == "{}");
}

TEST_CASE("ephemeral keys are cleared", "[state]") {
  orch::Workflow wf;
  wf.state_schema = {decl("scratch", "string", ReducerKind::kLastValue, true),
                     decl("keep", "string", ReducerKind::kLastValue, false)};
  wf.reindex();
  Value s = J("{\"scratch\":\"x\",\"keep\":\"y\"}");
  CHECK(orch::clear_ephemeral_keys(&s, wf) == 1);
  CHECK(s.to_json() == "{\"keep\":\"y\"}");
}

TEST_CASE("worker replies become state updates", "[state][reply]") {
  orch::TaskConfig plain;
  orch::TaskConfig keyed;
  keyed.output_key = "draft";
  orch::TaskConfig mapped;
  mapped.output_key = "raw";
  mapped.output_mapping = {{"title", "state.doc.title"}, {"raw", "doc.body"}, {"gone", "missing"}};

  SECTION("plain text goes to output") {
    auto e = orch::interpret_reply("hello", Value(), plain);
    CHECK(e.updates.to_json() == "{\"output\":\"hello\"}");
    // Without output_key the text is never parsed into the update.
    CHECK(orch::interpret_reply("42", Value(), plain).updates.to_json() == "{\"output\":\"42\"}");
  }
  SECTION("output_key parses JSON when it can") {
    CHECK(orch::interpret_reply("42", Value(), keyed).updates.to_json() == "{\"draft\":42}");
    CHECK(orch::interpret_reply("null", Value(), keyed).updates.to_json() == "{\"draft\":null}");
    CHECK(orch::interpret_reply("not json", Value(), keyed).updates.to_json() == "{\"draft\":\"not json\"}");
  }
  SECTION("output_mapping wins over output_key on the same key") {
    auto e = orch::interpret_reply("{\"doc\":{\"title\":\"T\",\"body\":\"B\"}}", Value(), mapped);
    CHECK(e.updates.to_json() == "{\"raw\":\"B\",\"title\":\"T\"}");
  }
  SECTION("state_updates inside the output text") {
    auto e = orch::interpret_reply("{\"state_updates\":{\"a\":1},\"goto\":\"fix\"}", Value(), keyed);
    CHECK(e.updates.to_json() == "{\"a\":1}");
    CHECK(e.has_goto);
    CHECK(e.goto_nodes == std::vector<std::string>{"fix"});
  }
  SECTION("envelope fields come first") {
    Value env = J("{\"state_updates\":{\"b\":2},\"goto\":[\"x\",3,\"y\"],\"done\":true,"
                  "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5},"
                  "\"rate_limit\":{\"remaining\":9,\"limit\":10,\"reset_ms\":100},"
                  "\"ui_messages\":[{\"id\":\"u\"}]}");
    auto e = orch::interpret_reply("{\"state_updates\":{\"a\":1},\"goto\":\"z\"}", env, plain);
    CHECK(e.updates.to_json() == "{\"b\":2}");
    CHECK(e.goto_nodes == std::vector<std::string>{"x", "y"});
    CHECK(e.done);
    CHECK(e.usage.to_json() == "{\"input_tokens\":10,\"output_tokens\":5,\"total_tokens\":15}");
    CHECK(e.rate_limit["remaining"].as_int() == 9);
    CHECK(e.ui_messages.size() == 1);
  }
  SECTION("input_tokens override prompt_tokens; zero usage is ignored") {
    auto e = orch::interpret_reply("x", J("{\"usage\":{\"prompt_tokens\":1,\"input_tokens\":7}}"), plain);
    CHECK(e.usage["input_tokens"].as_int() == 7);
    CHECK(orch::interpret_reply("x", J("{\"usage\":{}}"), plain).usage.is_null());
  }
  SECTION("non-object state_updates change nothing; empty goto is no goto") {
    auto e = orch::interpret_reply("{\"state_updates\":[1],\"goto\":[]}", Value(), plain);
    CHECK(e.updates.to_json() == "{}");
    CHECK_FALSE(e.has_goto);
  }
}

TEST_CASE("an update of many keys applies each key's own reducer", "[state]") {
  orch::Workflow wf;
  wf.state_schema = {decl("a", "array", ReducerKind::kAppend, false), decl("n", "number", ReducerKind::kAdd, false),
                     decl("z", "array", ReducerKind::kAppend, false)};
  wf.reindex();
  Value state = J(R"({"a":[1],"n":1,"z":[0]})");
  // More keys than apply_updates keeps on its stack, reducers in both places.
  REQUIRE(orch::apply_updates(&state, J(R"({"k1":1,"a":[2],"k2":2,"k3":3,"k4":4,"n":5,"k5":5,"k6":6,"k7":7,
                                           "k8":8,"z":[9],"k9":{"__overwrite":true,"value":9}})"),
                              &wf)
              .ok());
  CHECK(state == J(R"({"a":[1,2],"n":6,"z":[0,9],"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9})"));
  // A failing key among many still leaves the state as it was.
  Value before = state;
  CHECK_FALSE(orch::apply_updates(&state, J(R"({"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k9":0,"n":"x"})"), &wf).ok());
  CHECK(state == before);
}
