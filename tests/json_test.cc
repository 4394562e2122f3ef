// SPDX-License-Identifier: MIT
#include <string>

#include "catch.h"
#include "orch/value.h"

using orch::parse_json;
using orch::Value;

namespace {
std::string roundtrip(const std::string& text) {
  auto v = parse_json(text);
  REQUIRE(v.ok());
  return v->to_json();
}
}  // namespace

TEST_CASE("every JSON type round-trips", "[json]") {
  for (const char* text : {"null", "true", "false", "0", "-1", "1.5", "\"s\"", "[]", "{}",
                           "[1,\"a\",null,true,{\"k\":[2.5]}]", "{\"b\":1,\"a\":{\"c\":[]}}"}) {
    CHECK(roundtrip(text) == text);
  }
}

TEST_CASE("int64 extremes stay exact", "[json]") {
  CHECK(roundtrip("-9223372036854775808") == "-9223372036854775808");
  CHECK(roundtrip("9223372036854775807") == "9223372036854775807");
  auto v = parse_json("9223372036854775807");
  REQUIRE(v->is_int());
  CHECK(v->as_int() == INT64_MAX);
  // One past int64 no longer fits: it becomes a double.
  CHECK(parse_json("9223372036854775808")->is_double());
}

TEST_CASE("doubles print in shortest round-trip form", "[json]") {
  CHECK(Value(0.1).to_json() == "0.1");
  CHECK(Value(1.0).to_json() == "1.0");
  CHECK(Value(-2.5).to_json() == "-2.5");
  CHECK(Value(0.1 + 0.2).to_json() == "0.30000000000000004");
  CHECK(roundtrip("1e300") == "1e+300");
  CHECK(parse_json(Value(1e-7).to_json())->as_double() == 1e-7);
  CHECK(roundtrip("7e-1") == "0.7");
  CHECK(Value(std::numeric_limits<double>::quiet_NaN()).to_json() == "null");
  CHECK(Value(std::numeric_limits<double>::infinity()).to_json() == "null");
}

TEST_CASE("escapes and non-ASCII text survive", "[json]") {
  auto v = parse_json(R"("q\" b\\ n\n t\t u\u0001 e\u00e9 \ud83d\ude00 /")");
  REQUIRE(v.ok());
  CHECK(v->as_string() == "q\" b\\ n\n t\t u\x01 e\xc3\xa9 \xf0\x9f\x98\x80 /");
  CHECK(v->to_json() == "\"q\\\" b\\\\ n\\n t\\t u\\u0001 e\xc3\xa9 \xf0\x9f\x98\x80 /\"");
  CHECK(roundtrip("\"日本語\"") == "\"日本語\"");
}

TEST_CASE("invalid JSON reports the byte offset", "[json]") {
  size_t offset = 0;
  auto r = parse_json("{\"a\":1,}", {}, &offset);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == orch::StatusCode::kInvalidArgument);
  CHECK(offset == 7);
  CHECK(r.status().message().find("at byte 7") != std::string::npos);

  for (const char* bad : {"", "{", "[1,2", "tru", "{\"a\" 1}", "01", "[1] x", "\"unterminated",
                          "{'a':1}", "nul", "[1,]"}) {
    INFO(bad);
    CHECK_FALSE(parse_json(bad).ok());
  }
}

TEST_CASE("invalid UTF-8 is rejected with its offset", "[json]") {
  size_t offset = 0;
  std::string text = "\"ab\xff\"";
  auto r = parse_json(text, {}, &offset);
  REQUIRE_FALSE(r.ok());
  CHECK(offset >= 3);
  CHECK_FALSE(parse_json("\"\xc3\"").ok());        // truncated sequence
  CHECK_FALSE(parse_json("\"\xed\xa0\x80\"").ok());  // UTF-16 surrogate encoded in UTF-8
  CHECK_FALSE(parse_json(R"("\ude00")").ok());          // unpaired low surrogate escape
  CHECK_FALSE(parse_json(R"({"\ud800x": 1})").ok());    // unpaired high surrogate in a key
  CHECK(parse_json(R"("\ud83d\ude00")")->as_string() == "\xf0\x9f\x98\x80");
}

TEST_CASE("deep nesting is an error, never a stack overflow", "[json]") {
  std::string deep(100000, '[');
  auto r = parse_json(deep);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("nesting deeper than 512") != std::string::npos);

  std::string ok_depth = std::string(512, '[') + std::string(512, ']');
  CHECK(parse_json(ok_depth).ok());
  std::string too_deep = std::string(513, '[') + std::string(513, ']');
  CHECK_FALSE(parse_json(too_deep).ok());
  orch::ParseOptions shallow;
  shallow.max_depth = 2;
  CHECK_FALSE(parse_json("[[[1]]]", shallow).ok());
  CHECK(parse_json("[[1]]", shallow).ok());
}

TEST_CASE("duplicate keys: last wins at the first position", "[json]") {
  auto v = parse_json(R"({"a":1,"b":2,"a":3})");
  REQUIRE(v.ok());
  CHECK(v->to_json() == R"({"a":3,"b":2})");
}

TEST_CASE("whitespace around the document is allowed", "[json]") {
  CHECK(parse_json(" \n\t{\"a\" : [ 1 , 2 ] }\r\n ")->to_json() == "{\"a\":[1,2]}");
}

TEST_CASE("number edge cases parse exactly and safely", "[json]") {
  CHECK(parse_json("0E92")->as_double() == 0.0);
  CHECK(parse_json("-0.0")->is_double());
  CHECK(parse_json("1e-400")->as_double() == 0.0);
  CHECK(parse_json("4.9e-324")->as_double() > 0.0);  // the smallest denormal survives
  CHECK(parse_json("2.2250738585072014e-308")->as_double() == 2.2250738585072014e-308);
  CHECK(parse_json("0.1")->as_double() == 0.1);
  CHECK(parse_json("123456789012345678901234567890")->is_double());
  auto big = parse_json("[1e400]");
  REQUIRE_FALSE(big.ok());
  CHECK(big.status().message().find("oo big") != std::string::npos);
  CHECK_FALSE(parse_json("-").ok());
  CHECK_FALSE(parse_json("1.").ok());
  CHECK_FALSE(parse_json("+1").ok());
}
