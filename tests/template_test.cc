// SPDX-License-Identifier: MIT
#include "orch/template.h"

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/value.h"

using orch::Result;
using orch::Status;
using orch::StatusCode;
using orch::Template;
using orch::TemplateContext;
using orch::Value;

namespace {

Value parse(const char* json) {
  auto v = orch::parse_json(json);
  REQUIRE(v.ok());
  return *v;
}

// Compiles and renders, failing the test on any error.
std::string render(const std::string& text, const TemplateContext& ctx) {
  auto tpl = Template::compile(text);
  INFO("template: " << text << " error: " << tpl.status().to_string());
  REQUIRE(tpl.ok());
  auto out = tpl->render(ctx);
  INFO("render error: " << out.status().to_string());
  REQUIRE(out.ok());
  return *out;
}

struct Fixture {
  Value state = parse(R"({
    "name": "Ada",
    "count": 3,
    "ratio": 0.1,
    "whole": 2.0,
    "big": 9223372036854775807,
    "small": -9223372036854775808,
    "yes": true,
    "no": false,
    "nothing": null,
    "list": [1, "two", {"three": 3}],
    "obj": {"k": "v", "n": [1, 2]},
    "multi": "line1\nline2 \"quoted\" \\ back\ttab",
    "unicode": "héllo wörld ✓ 日本",
    "__config": {"model": "from-state", "depth": 2}
  })");
  Value input = parse(R"({"topic": "rockets", "nested": {"deep": [5, 6]}})");
  Value item = parse(R"({"title": "first", "tags": ["a", "b"]})");
  Value task = parse(R"({"id": "T-1", "meta": {"priority": 4}})");

  TemplateContext context() const {
    TemplateContext ctx;
    ctx.state = &state;
    ctx.input = &input;
    ctx.item = &item;
    ctx.extra_roots = {{"task", &task}};
    ctx.attempt = 2;
    ctx.store = [](std::string_view ns, std::string_view key) -> Result<Value> {
      if (ns == "prefs" && key == "color") return Value("blue");
      if (ns == "prefs" && key == "a.b.c") return Value::object({{"dotted", true}});
      if (ns == "prefs" && key == "n") return Value(7);
      if (ns == "broken") return Status::unavailable("store is down");
      return Status::not_found("no such key");
    };
    return ctx;
  }
};

}  // namespace

TEST_CASE("every expression kind renders", "[template]") {
  Fixture f;
  const TemplateContext ctx = f.context();
  struct Case {
    const char* text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"{{state.name}}", "Ada"},
      {"{{state.count}}", "3"},
      {"{{state.list.1}}", "two"},
      {"{{state.list[2].three}}", "3"},
      {"{{state.list[-1]}}", "{\"three\":3}"},
      {"{{state.state.name}}", ""},  // "state." is stripped only once
      {"{{input.topic}}", "rockets"},
      {"{{input.nested.deep[-1]}}", "6"},
      {"{{item}}", "{\"title\":\"first\",\"tags\":[\"a\",\"b\"]}"},
      {"{{item.title}}", "first"},
      {"{{item.tags.0}}", "a"},
      {"{{config.model}}", "from-state"},  // no config pointer: state.__config
      {"{{config.depth}}", "2"},
      {"{{task.id}}", "T-1"},
      {"{{task.meta.priority}}", "4"},
      {"{{attempt}}", "2"},
      {"{{store.prefs.color}}", "blue"},
      {"{{store.prefs.a.b.c}}", "{\"dotted\":true}"},  // the key keeps its dots
      {"{{store.prefs.n}}", "7"},
      {"{{store.prefs.absent}}", ""},  // NotFound renders empty
      {"Hi {{state.name}}, topic={{input.topic}}.", "Hi Ada, topic=rockets."},
  };
  for (const Case& c : cases) {
    CHECK(render(c.text, ctx) == c.want);
  }
}

TEST_CASE("values render raw, numbers as JSON text", "[template]") {
  Fixture f;
  const TemplateContext ctx = f.context();
  struct Case {
    const char* text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"{{state.multi}}", "line1\nline2 \"quoted\" \\ back\ttab"},  // no escaping
      {"{{state.unicode}}", "héllo wörld ✓ 日本"},
      {"→ {{state.name}} ←", "→ Ada ←"},
      {"{{state.ratio}}", "0.1"},
      {"{{state.whole}}", "2.0"},
      {"{{state.big}}", "9223372036854775807"},
      {"{{state.small}}", "-9223372036854775808"},
      {"{{state.yes}}/{{state.no}}", "true/false"},
      {"[{{state.nothing}}]", "[]"},  // null renders empty
      {"{{state.list}}", "[1,\"two\",{\"three\":3}]"},
      {"{{state.obj}}", "{\"k\":\"v\",\"n\":[1,2]}"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    CHECK(render(c.text, ctx) == c.want);
  }
  // Inside arrays and objects strings are JSON-escaped as usual.
  Value v = Value::object({{"arr", Value::array({"a\"b", Value()})}});
  TemplateContext vctx;
  vctx.state = &v;
  CHECK(render("{{state.arr}}", vctx) == "[\"a\\\"b\",null]");
}

TEST_CASE("missing values and unknown expressions render empty", "[template]") {
  Fixture f;
  const TemplateContext ctx = f.context();
  for (const char* text :
       {"{{state.absent}}", "{{state.name.x}}", "{{state.list.9}}", "{{state.list[9]}}",
        "{{input.absent}}", "{{item.absent}}", "{{config.absent}}", "{{task.absent}}", "{{state}}",
        "{{input}}", "{{config}}", "{{task}}", "{{steps.x.output}}", "{{foo.bar}}", "{{attempt.x}}",
        "{{ state.name | upper }}", "{{unknown}}"}) {
    INFO(text);
    CHECK(render(std::string("<") + text + ">", ctx) == "<>");
  }
  // Every pointer unset: everything is missing, nothing fails.
  TemplateContext none;
  CHECK(render("<{{state.name}}{{input.topic}}{{item}}{{item.x}}{{config.model}}"
               "{{task.id}}{{attempt}}>",
               none) == "<>");
}

TEST_CASE("whitespace inside delimiters is trimmed", "[template]") {
  Fixture f;
  const TemplateContext ctx = f.context();
  CHECK(render("{{ state.name }}", ctx) == "Ada");
  CHECK(render("{{\t\r\n state.name \n}}", ctx) == "Ada");
  CHECK(render("{%if state.yes%}Y{%endif%}", ctx) == "Y");
  CHECK(render("{%\n if\tstate.yes \n%}Y{%\telse\t%}N{%  endif\r\n%}", ctx) == "Y");
  CHECK(render("{% if   state.no %}Y{% else %}N{% endif %}", ctx) == "N");
}

TEST_CASE("config comes from the context before state.__config", "[template]") {
  Fixture f;
  TemplateContext ctx = f.context();
  Value config = Value::object({{"model", "from-context"}});
  ctx.config = &config;
  CHECK(render("{{config.model}}", ctx) == "from-context");
  CHECK(render("[{{config.depth}}]", ctx) == "[]");  // no merging with __config
  ctx.config = nullptr;
  CHECK(render("{{config.model}}", ctx) == "from-state");
  ctx.state = nullptr;
  CHECK(render("[{{config.model}}]", ctx) == "[]");
}

TEST_CASE("attempt renders only when set", "[template]") {
  TemplateContext ctx;
  CHECK(render("[{{attempt}}]", ctx) == "[]");
  ctx.attempt = 0;
  CHECK(render("[{{attempt}}]", ctx) == "[0]");
  ctx.attempt = std::numeric_limits<int64_t>::max();
  CHECK(render("{{attempt}}", ctx) == "9223372036854775807");
}

TEST_CASE("store expressions go through the callback", "[template][store]") {
  Fixture f;
  TemplateContext ctx = f.context();

  SECTION("the callback sees namespace and key, once per occurrence and render") {
    std::vector<std::string> calls;
    ctx.store = [&calls](std::string_view ns, std::string_view key) -> Result<Value> {
      calls.push_back(std::string(ns) + "|" + std::string(key));
      return Value("v");
    };
    auto tpl = Template::compile("{{store.a.b}} {{ store.ns.k.with.dots }}");
    REQUIRE(tpl.ok());
    CHECK(tpl->uses_store());
    CHECK(*tpl->render(ctx) == "v v");
    CHECK(*tpl->render(ctx) == "v v");
    CHECK(calls == std::vector<std::string>{"a|b", "ns|k.with.dots", "a|b", "ns|k.with.dots"});
  }

  SECTION("a callback error fails the render with its code") {
    auto out = orch::render_template("x {{store.broken.key}} y", ctx);
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == StatusCode::kUnavailable);
    CHECK(out.status().message().find("store.broken.key") != std::string::npos);
    CHECK(out.status().message().find("store is down") != std::string::npos);
  }

  SECTION("a callback error inside an if condition is not swallowed") {
    auto out = orch::render_template("{% if store.broken.key %}a{% else %}b{% endif %}", ctx);
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == StatusCode::kUnavailable);
  }

  SECTION("no callback configured fails the render") {
    ctx.store = nullptr;
    auto out = orch::render_template("{{store.prefs.color}}", ctx);
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == StatusCode::kFailedPrecondition);
    CHECK(out.status().message().find("store.prefs.color") != std::string::npos);
    // Templates without store expressions never need one.
    CHECK(render("{{state.name}}", ctx) == "Ada");
  }

  SECTION("NotFound is missing: empty and false") {
    CHECK(render("[{{store.prefs.absent}}]", ctx) == "[]");
    CHECK(render("{% if store.prefs.absent %}y{% else %}n{% endif %}", ctx) == "n");
    CHECK(render("{% if store.prefs.color %}y{% else %}n{% endif %}", ctx) == "y");
  }

  SECTION("a store expression without namespace or key does not compile") {
    for (const char* text : {"{{store.ns}}", "{{store..key}}", "{{store.ns.}}", "{{store.}}"}) {
      INFO(text);
      auto tpl = Template::compile(text);
      REQUIRE_FALSE(tpl.ok());
      CHECK(tpl.status().message().find("at byte 0") != std::string::npos);
      CHECK(tpl.status().message().find("namespace and a key") != std::string::npos);
    }
    // A bare "store" is an unknown expression, like "state".
    CHECK(render("[{{store}}]", ctx) == "[]");
    CHECK_FALSE(Template::compile("{{state.x}}")->uses_store());
  }
}

TEST_CASE("truthiness of if conditions", "[template][if]") {
  Value state = parse(R"({
    "t": true, "f": false, "zero": 0, "one": 1, "neg": -1, "fzero": 0.0, "fhalf": 0.5,
    "empty": "", "space": " ", "sfalse": "false", "szero": "0", "snull": "null",
    "sarr": "[]", "arr0": [], "arr1": [0], "obj0": {}, "obj1": {"a": null}, "nul": null
  })");
  TemplateContext ctx;
  ctx.state = &state;
  struct Case {
    const char* key;
    bool want;
  };
  const std::vector<Case> cases = {
      {"t", true},      {"f", false},    {"zero", false},  {"one", true},      {"neg", true},
      {"fzero", false}, {"fhalf", true}, {"empty", false}, {"space", true},    {"sfalse", true},
      {"szero", true},  {"snull", true}, {"sarr", true},   {"arr0", false},    {"arr1", true},
      {"obj0", false},  {"obj1", true},  {"nul", false},   {"missing", false},
  };
  for (const Case& c : cases) {
    INFO("key: " << c.key);
    std::string text = std::string("{% if state.") + c.key + " %}T{% else %}F{% endif %}";
    CHECK(render(text, ctx) == (c.want ? "T" : "F"));
  }
  // Unknown roots are false; so are unset context parts.
  CHECK(render("{% if foo.bar %}T{% else %}F{% endif %}", ctx) == "F");
  CHECK(render("{% if item %}T{% else %}F{% endif %}", ctx) == "F");
  CHECK(render("{% if attempt %}T{% else %}F{% endif %}", ctx) == "F");
  ctx.attempt = 1;
  CHECK(render("{% if attempt %}T{% else %}F{% endif %}", ctx) == "T");
}

TEST_CASE("conditionals nest", "[template][if]") {
  TemplateContext ctx;
  // Three levels, with an if inside an else; every combination of a/b/c.
  const std::string text =
      "<{% if state.a %}A{% if state.b %}B{% else %}b{% if state.c %}C{% else %}c{% endif %}"
      "{% endif %}{% else %}a{% if state.b %}B{% else %}b{% if state.c %}C{% endif %}{% endif %}"
      "{% endif %}>";
  auto tpl = Template::compile(text);
  REQUIRE(tpl.ok());
  struct Case {
    bool a, b, c;
    const char* want;
  };
  const std::vector<Case> cases = {
      {true, true, true, "<AB>"},    {true, true, false, "<AB>"},   {true, false, true, "<AbC>"},
      {true, false, false, "<Abc>"}, {false, true, true, "<aB>"},   {false, true, false, "<aB>"},
      {false, false, true, "<abC>"}, {false, false, false, "<ab>"},
  };
  for (const Case& c : cases) {
    Value state = Value::object({{"a", c.a}, {"b", c.b}, {"c", c.c}});
    ctx.state = &state;
    INFO("a=" << c.a << " b=" << c.b << " c=" << c.c);
    auto out = tpl->render(ctx);
    REQUIRE(out.ok());
    CHECK(*out == c.want);
  }
  // An if with no else, and an empty branch.
  Value state = Value::object({{"x", true}});
  ctx.state = &state;
  CHECK(render("a{% if state.x %}{% endif %}b", ctx) == "ab");
  CHECK(render("a{% if state.y %}Y{% endif %}b", ctx) == "ab");
  CHECK(render("a{% if state.x %}{% else %}E{% endif %}b", ctx) == "ab");
  CHECK(render("a{% if state.y %}{% else %}E{% endif %}b", ctx) == "aEb");
  // Sibling conditionals.
  CHECK(render("{% if state.x %}1{% endif %}{% if state.y %}2{% else %}3{% endif %}", ctx) == "13");
}

TEST_CASE("deep nesting compiles and renders without recursion", "[template][if]") {
  constexpr int kDepth = 20000;
  std::string text;
  for (int i = 0; i < kDepth; ++i) text += "{% if state.x %}(";
  text += "core";
  for (int i = 0; i < kDepth; ++i) text += "){% else %}-{% endif %}";
  Value yes = Value::object({{"x", 1}});
  Value no = Value::object({{"x", 0}});
  auto tpl = Template::compile(text);
  REQUIRE(tpl.ok());
  TemplateContext ctx;
  ctx.state = &yes;
  CHECK(*tpl->render(ctx) == std::string(kDepth, '(') + "core" + std::string(kDepth, ')'));
  ctx.state = &no;
  CHECK(*tpl->render(ctx) == "-");
}

TEST_CASE("other tags and stray delimiters stay literal", "[template]") {
  Fixture f;
  const TemplateContext ctx = f.context();
  struct Case {
    const char* text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"{% for x in y %}{{state.name}}{% endfor %}", "{% for x in y %}Ada{% endfor %}"},
      {"{%- if state.yes -%}x", "{%- if state.yes -%}x"},
      {"{% elif state.yes %}", "{% elif state.yes %}"},
      {"{% iffy %}", "{% iffy %}"},
      {"{% set a = 1 %}{%%}", "{% set a = 1 %}{%%}"},
      {"{ single } and }} and %} and {", "{ single } and }} and %} and {"},
      {"json: {\"a\": {\"b\": 1}}", "json: {\"a\": {\"b\": 1}}"},
      {"", ""},
      {"plain text", "plain text"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    CHECK(render(c.text, ctx) == c.want);
  }
}

TEST_CASE("malformed templates fail to compile with a byte position", "[template][errors]") {
  struct Case {
    const char* text;
    size_t byte;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"0123456789{% if", 10, "unterminated {%"},
      {"é{% if", 2, "unterminated {%"},  // byte offsets, not characters
      {"x {% for y", 2, "unterminated {%"},
      {"0123456789ab{% if state.x %}yes", 12, "unterminated {% if %}"},
      {"{% if state.a %}{% if state.b %}x{% endif %}", 0, "unterminated {% if %}"},
      {"{% if state.a %}{% if state.b %}x", 16, "unterminated {% if %}"},
      {"{% if state.a %}{% else %}{% if state.b %}", 26, "unterminated {% if %}"},
      {"abc{% else %}", 3, "{% else %} without {% if %}"},
      {"abcd{% endif %}", 4, "{% endif %} without {% if %}"},
      {"{% if state.a %}{% endif %}{% endif %}", 27, "{% endif %} without {% if %}"},
      {"{% if state.a %}1{% else %}2{% else %}3{% endif %}", 28, "second {% else %}"},
      {"xy{% if %}{% endif %}", 2, "without a condition"},
      {"xy{%   if\t%}{% endif %}", 2, "without a condition"},
      {"a{{}}", 1, "empty expression"},
      {"ab{{   }}", 2, "empty expression"},
      {"abc{{state.}}", 3, "empty path"},
      {"{{item.}}", 0, "empty path"},
      {"---{{state.list[x]}}", 3, "malformed index"},
      {"{% if state.a[0][1] %}{% endif %}", 0, "malformed index"},
  };
  for (const Case& c : cases) {
    INFO("template: " << c.text);
    size_t offset = 999;
    auto tpl = Template::compile(c.text, &offset);
    REQUIRE_FALSE(tpl.ok());
    CHECK(tpl.status().code() == StatusCode::kInvalidArgument);
    const std::string& msg = tpl.status().message();
    INFO("message: " << msg);
    CHECK(msg.rfind("template error at byte " + std::to_string(c.byte) + ": ", 0) == 0);
    CHECK(msg.find(c.says) != std::string::npos);
    CHECK(offset == c.byte);
  }
  // The offset is left alone on success.
  size_t offset = 999;
  CHECK(Template::compile("{{state.x}}", &offset).ok());
  CHECK(offset == 999);
}

TEST_CASE("a {{ that is never closed leaves the rest literal as in NullBoiler", "[template]") {
  Fixture f;
  const TemplateContext ctx = f.context();
  for (const char* text : {"hello {{state.x", "ab {{ state.x } }", "Explain the {{ syntax", "é{{state.x", "{{"}) {
    INFO(text);
    size_t offset = 999;
    auto tpl = Template::compile(text, &offset);
    REQUIRE(tpl.ok());
    CHECK(offset == 999);
  }
  CHECK(render("hello {{state.name", ctx) == "hello {{state.name");
  CHECK(render("{{state.name}} then {{ unclosed", ctx) == "Ada then {{ unclosed");
  CHECK(render("{% if state.yes %}yes {{ open{% endif %}", ctx) == "yes {{ open");
}

TEST_CASE("compile once, render many", "[template]") {
  auto tpl = Template::compile("{{state.who}} #{{attempt}}{% if state.vip %} (VIP){% endif %}");
  REQUIRE(tpl.ok());
  const Template copy = *tpl;  // copies share the program
  for (int i = 0; i < 50; ++i) {
    Value state = Value::object({{"who", "user" + std::to_string(i)}, {"vip", i % 2 == 0}});
    TemplateContext ctx;
    ctx.state = &state;
    ctx.attempt = i;
    std::string want =
        "user" + std::to_string(i) + " #" + std::to_string(i) + (i % 2 == 0 ? " (VIP)" : "");
    CHECK(*tpl->render(ctx) == want);
    CHECK(*copy.render(ctx) == want);
  }
  CHECK(copy.source() == tpl->source());
}

TEST_CASE("rendered values are not re-scanned", "[template]") {
  Value state = Value::object(
      {{"evil", "{{state.secret}}{% if state.secret %}x{% endif %}"}, {"secret", "s3cr3t"}});
  TemplateContext ctx;
  ctx.state = &state;
  CHECK(render("{{state.evil}}", ctx) == "{{state.secret}}{% if state.secret %}x{% endif %}");
}

TEST_CASE("templates render concurrently", "[template]") {
  auto tpl = Template::compile("{% if state.on %}{{state.n}}{% else %}off{% endif %}");
  REQUIRE(tpl.ok());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        Value state = Value::object({{"on", (i + t) % 3 != 0}, {"n", i}});
        TemplateContext ctx;
        ctx.state = &state;
        std::string want = (i + t) % 3 != 0 ? std::to_string(i) : "off";
        auto out = tpl->render(ctx);
        if (!out.ok() || *out != want) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong == 0);
}

TEST_CASE("default template and one-shot rendering", "[template]") {
  Template empty;
  CHECK(empty.source().empty());
  CHECK(*empty.render(TemplateContext()) == "");
  CHECK(empty.state_references().empty());
  CHECK_FALSE(empty.uses_store());

  Value state = Value::object({{"x", 1}});
  TemplateContext ctx;
  ctx.state = &state;
  CHECK(*orch::render_template("x={{state.x}}", ctx) == "x=1");
  auto bad = orch::render_template("{% if state.x", ctx);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("state references list top-level keys", "[template][refs]") {
  const char* text =
      "{{state.plan}} {{ state.review.score }} {{input.x}} {{state.items[0].name}} "
      "{% if state.approved %}{{state.plan}}{% else %}{{state.items.1}}{% endif %} "
      "{{config.model}} {{item.state}} {{state.list[-1]}} {{statement.x}} "
      "{% if state.flag %}{% endif %}";
  const std::vector<std::string> want = {"plan", "review", "items", "approved", "list", "flag"};
  auto tpl = Template::compile(text);
  REQUIRE(tpl.ok());
  CHECK(tpl->state_references() == want);
  CHECK(Template::list_state_references(text) == want);

  // The text scan never fails: it keeps what it can read from broken templates.
  CHECK(Template::list_state_references("{{state.a}} {% else %} {{state.b}} {{state.c") ==
        std::vector<std::string>{"a", "b"});
  CHECK(Template::list_state_references("{% if state.a %}{{state.b}}") ==
        std::vector<std::string>{"a", "b"});
  CHECK(Template::list_state_references("{{state.x[oops]}} {{state.y}}") ==
        std::vector<std::string>{"x", "y"});
  CHECK(Template::list_state_references("{% if state.z").empty());
  CHECK(Template::list_state_references("no templates here").empty());
}

namespace {

std::string repeat(const std::string& piece, size_t bytes) {
  std::string out;
  out.reserve(bytes + piece.size());
  while (out.size() < bytes) out += piece;
  return out;
}

// The render error of `text`, which must compile and fail to render.
Status render_error(const std::string& text, const TemplateContext& ctx) {
  auto tpl = Template::compile(text);
  REQUIRE(tpl.ok());
  auto out = tpl->render(ctx);
  REQUIRE_FALSE(out.ok());
  return out.status();
}

}  // namespace

TEST_CASE("rendered output is capped, by default at 1 MiB", "[template][limits]") {
  CHECK(TemplateContext().max_output_bytes == size_t{1} << 20);
  Value state = Value::object({{"big", std::string(300 * 1024, 'x')}});
  TemplateContext ctx;
  ctx.state = &state;

  SECTION("one large value named many times") {
    Status st = render_error("{{state.big}}{{state.big}}{{state.big}}{{state.big}}", ctx);
    CHECK(st.code() == StatusCode::kResourceExhausted);
    CHECK(st.message() == "rendered template exceeds 1048576 bytes (the max_output_bytes limit)");
    // Three fit.
    CHECK(render("{{state.big}}{{state.big}}{{state.big}}", ctx).size() == 3 * 300 * 1024);
  }
  SECTION("the cap is exact and counts literal text too") {
    ctx.max_output_bytes = 10;
    CHECK(render("0123456789", ctx) == "0123456789");
    CHECK(render_error("0123456789A", ctx).code() == StatusCode::kResourceExhausted);
    Value small = Value::object({{"s", "56789"}, {"n", 12345}, {"list", Value::array({1, 2})}});
    ctx.state = &small;
    CHECK(render("01234{{state.s}}", ctx) == "0123456789");
    CHECK(render_error("012345{{state.s}}", ctx).code() == StatusCode::kResourceExhausted);
    CHECK(render("01234{{state.n}}", ctx) == "0123412345");
    CHECK(render_error("012345{{state.n}}", ctx).code() == StatusCode::kResourceExhausted);
    CHECK(render("01234{{state.list}}", ctx) == "01234[1,2]");
    CHECK(render_error("012345{{state.list}}", ctx).code() == StatusCode::kResourceExhausted);
    ctx.max_output_bytes = 1;
    CHECK(render("", ctx).empty());
    CHECK(render("{{state.missing}}", ctx).empty());
    CHECK(render("x", ctx) == "x");
    CHECK(render_error("xy", ctx).code() == StatusCode::kResourceExhausted);
  }
  SECTION("0 is no limit") {
    ctx.max_output_bytes = 0;
    CHECK(render("{{state.big}}{{state.big}}{{state.big}}{{state.big}}", ctx).size() ==
          4 * 300 * 1024);
  }
  SECTION("a container holding a large value many times stops early") {
    // The array costs little in memory (its items share one string), but its
    // JSON text is 12 MB.
    Value list = Value::array();
    for (int i = 0; i < 40; ++i) list.push_back(state["big"]);
    Value nested = Value::object({{"outer", Value::object({{"k", list}})}});
    ctx.state = &nested;
    CHECK(render_error("{{state.outer}}", ctx).code() == StatusCode::kResourceExhausted);
    ctx.max_output_bytes = size_t{16} << 20;
    CHECK(render("{{state.outer}}", ctx) == nested["outer"].to_json());
  }
  SECTION("a larger cap lets a larger prompt through") {
    ctx.max_output_bytes = 2 << 20;
    CHECK(render("{{state.big}}{{state.big}}{{state.big}}{{state.big}}", ctx).size() ==
          4 * 300 * 1024);
  }
  SECTION("one-shot rendering obeys the cap too") {
    ctx.max_output_bytes = 3;
    CHECK(orch::render_template("{{state.big}}", ctx).status().code() ==
          StatusCode::kResourceExhausted);
  }
}

TEST_CASE("compiling and listing references are linear in the text", "[template][limits]") {
  // A megabyte of delimiters that never close, or close at once, used to cost
  // seconds in the reference scans; each is now one pass.
  constexpr size_t kMiB = size_t{1} << 20;
  for (const char* piece : {"{", "{{", "{%", "}}{{", "%}{%", "{{state.a", "{% if state.a "}) {
    INFO(piece);
    std::string text = repeat(piece, kMiB);
    (void)Template::compile(text);  // fails or not; it must only finish
    (void)Template::list_state_references(text);
  }
  CHECK(Template::list_state_references(repeat("{{state.a}}", kMiB)) ==
        std::vector<std::string>{"a"});
  // Tens of thousands of distinct keys, each listed once in order.
  std::string many;
  for (int i = 0; many.size() < kMiB; ++i) many += "{{state.k" + std::to_string(i) + "}}";
  auto tpl = Template::compile(many);
  REQUIRE(tpl.ok());
  const auto& refs = tpl->state_references();
  CHECK(refs.size() > 50000);
  CHECK(refs.front() == "k0");
  CHECK(refs.back() == "k" + std::to_string(refs.size() - 1));
  CHECK(Template::list_state_references(many) == refs);
}

TEST_CASE("a host adds template roots by name, built-in roots come first", "[template]") {
  Value ticket = parse(R"({"id": "T-9", "tags": ["x"]})");
  Value shadow = parse(R"({"topic": "not the input"})");
  auto tpl = Template::compile("{{ticket.id}}/{{ticket.tags}}/{{other.id}}/{{input.topic}}");
  REQUIRE(tpl.ok());
  Value input = parse(R"({"topic": "rockets"})");
  TemplateContext ctx;
  ctx.input = &input;
  auto without = tpl->render(ctx);
  REQUIRE(without.ok());
  CHECK(*without == "///rockets");
  ctx.extra_roots = {{"ticket", &ticket}, {"input", &shadow}};
  auto with = tpl->render(ctx);
  REQUIRE(with.ok());
  CHECK(*with == R"(T-9/["x"]//rockets)");
}
