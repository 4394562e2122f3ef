// SPDX-License-Identifier: MIT
#include <algorithm>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "orch/value.h"

using orch::Array;
using orch::Object;
using orch::Value;

TEST_CASE("value holds each JSON type", "[value]") {
  CHECK(Value().is_null());
  CHECK(Value(true).as_bool());
  CHECK(Value(42).as_int() == 42);
  CHECK(Value(2.5).as_double() == 2.5);
  CHECK(Value("hi").as_string() == "hi");
  CHECK(Value::array({1, 2}).size() == 2);
  CHECK(Value::object({{"a", 1}}).find("a")->as_int() == 1);
  CHECK(Value(std::numeric_limits<unsigned long long>::max()).is_double());
  CHECK(orch::type_name(Value(1.5).type()) == "number");
}

TEST_CASE("copies share storage until written", "[value]") {
  Value a = Value::object({{"list", Value::array({1, 2, 3})}, {"name", "x"}});
  Value b = a;
  CHECK(a.shares_storage_with(b));
  b["name"] = "y";
  CHECK(a["name"].as_string() == "x");
  CHECK(b["name"].as_string() == "y");
  // The untouched child is still shared after the parent was copied.
  CHECK(a["list"].shares_storage_with(b["list"]));
  b["list"].push_back(4);
  CHECK(a["list"].size() == 3);
  CHECK(b["list"].size() == 4);
}

TEST_CASE("object keeps insertion order and replaces in place", "[value]") {
  Object o;
  o.set("z", 1);
  o.set("a", 2);
  o.set("z", 3);
  REQUIRE(o.size() == 2);
  CHECK(o.at_index(0).first == "z");
  CHECK(o.at_index(0).second.as_int() == 3);
  CHECK(o.erase("z"));
  CHECK_FALSE(o.erase("z"));
  CHECK(o.at_index(0).first == "a");
}

TEST_CASE("large objects stay correct with the hash index", "[value]") {
  Object o;
  for (int i = 0; i < 100; ++i) o.set("k" + std::to_string(i), i);
  for (int i = 0; i < 100; ++i) REQUIRE(o.find("k" + std::to_string(i))->as_int() == i);
  CHECK(o.erase("k50"));
  CHECK(o.find("k50") == nullptr);
  CHECK(o.find("k51")->as_int() == 51);
  CHECK(o.at_index(50).first == "k51");
  o.set("k50", -1);
  CHECK(o.at_index(99).first == "k50");
}

TEST_CASE("equality is deep and order-insensitive for objects", "[value]") {
  CHECK(Value::object({{"a", 1}, {"b", 2}}) == Value::object({{"b", 2}, {"a", 1}}));
  CHECK(Value::array({1, 2}) != Value::array({2, 1}));
  CHECK(Value(1) == Value(1.0));
  CHECK(Value("1") != Value(1));
  CHECK(Value() == Value(nullptr));
  CHECK(Value(false) != Value());
}

TEST_CASE("paths walk objects and arrays", "[value]") {
  Value v = Value::object({{"a", Value::object({{"b", Value::array({Value::object({{"c", 7}})})}})}});
  REQUIRE(v.find_path("a.b.0.c") != nullptr);
  CHECK(v.find_path("a.b.0.c")->as_int() == 7);
  CHECK(v.find_path("a.b.1.c") == nullptr);
  CHECK(v.find_path("a.x") == nullptr);
  CHECK(v.find_path("a.b.0.c.d") == nullptr);
  CHECK(v.find_path("") == &v);

  CHECK(v.set_path("a.b.0.d", "new").ok());
  CHECK(v.find_path("a.b.0.d")->as_string() == "new");
  CHECK(v.set_path("x.y.z", 1).ok());
  CHECK(v.find_path("x.y.z")->as_int() == 1);
  CHECK(v.set_path("a.b.1", 2).ok());  // one past the end appends
  CHECK(v.find_path("a.b.1")->as_int() == 2);
  CHECK(v.set_path("a.b.5", 2).code() == orch::StatusCode::kInvalidArgument);
  CHECK(v.set_path("x.y.z.w", 1).code() == orch::StatusCode::kInvalidArgument);
}

TEST_CASE("lenient getters", "[value]") {
  CHECK(Value(3.0).get_int(-1) == 3);
  CHECK(Value(3.5).get_int(-1) == -1);
  CHECK(Value(1e300).get_int(-1) == -1);
  CHECK(Value("x").get_int(-1) == -1);
  CHECK(Value(2).get_double(0) == 2.0);
  CHECK(Value(1).get_string("d") == "d");
  CHECK(Value().get_bool(true));
  const Value obj = Value::object({{"a", 1}});
  CHECK(obj["missing"].is_null());
  const Value five(5);
  CHECK(five["a"].is_null());
}

namespace {

Array numbers(int n) {
  Array a;
  for (int i = 0; i < n; ++i) a.push_back(i);
  return a;
}

bool holds_sequence(const Array& a, int n) {
  if (a.size() != static_cast<size_t>(n)) return false;
  int expected = 0;
  for (const Value& v : a) {
    if (v.as_int() != expected++) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("arrays: copies share chunks, writes to a copy never show in the original", "[value][array]") {
  for (int n : {0, 1, 31, 32, 33, 64, 100, 1000}) {
    Array original = numbers(n);
    Array copy = original;
    copy.push_back(n);
    CHECK(holds_sequence(original, n));
    CHECK(holds_sequence(copy, n + 1));
    if (n > 0) {
      Array written = original;
      written[static_cast<size_t>(n / 2)] = "changed";
      CHECK(holds_sequence(original, n));
      CHECK(written[static_cast<size_t>(n / 2)].as_string() == "changed");
      CHECK(written != original);
    }
  }
  // Growing a snapshot many times: every snapshot keeps its own length.
  Value state = Value::array();
  std::vector<Value> snapshots;
  for (int i = 0; i < 200; ++i) {
    snapshots.push_back(state);
    state.push_back(i);
  }
  for (int i = 0; i < 200; ++i) CHECK(holds_sequence(snapshots[static_cast<size_t>(i)].as_array(), i));
}

TEST_CASE("arrays: the vector operations the engine and hosts use", "[value][array]") {
  Array a = numbers(70);
  CHECK(a.front().as_int() == 0);
  CHECK(a.back().as_int() == 69);
  CHECK(a.rbegin()->as_int() == 69);
  CHECK((a.end() - a.begin()) == 70);
  CHECK(std::find(a.cbegin(), a.cend(), Value(40)) - a.cbegin() == 40);
  Array tail(a.cbegin() + 65, a.cend());
  CHECK(tail == Array{65, 66, 67, 68, 69});

  Array shared = a;
  a.erase(a.cbegin() + 40, a.cend());  // truncation
  CHECK(holds_sequence(a, 40));
  CHECK(holds_sequence(shared, 70));
  a.pop_back();
  CHECK(holds_sequence(a, 39));
  a.erase(a.cbegin());  // from the front: rebuilds
  CHECK(a.size() == 38);
  CHECK(a.front().as_int() == 1);
  const Array& view = a;
  Array zero{0};
  a.insert(view.begin(), zero.cbegin(), zero.cend());  // back at the front
  CHECK(holds_sequence(a, 39));
  Array more{39, 40};
  a.insert(view.end(), more.cbegin(), more.cend());
  CHECK(holds_sequence(a, 41));

  // remove_if through non-const iterators leaves the shared copy alone.
  Array before = a;
  a.erase(std::remove_if(a.begin(), a.end(), [](const Value& v) { return v.as_int() % 2 == 1; }), a.end());
  CHECK(a.size() == 21);
  CHECK(holds_sequence(before, 41));
  for (const Value& v : a) CHECK(v.as_int() % 2 == 0);
  a.emplace_back("last");
  CHECK(a.back().as_string() == "last");
  a.clear();
  CHECK(a.empty());
  CHECK(Array(std::vector<Value>{1, 2}) == Array{1, 2});
}

TEST_CASE("built objects: a repeated key keeps its first place and takes the later value", "[value]") {
  Value v = Value::object({{"a", 1}, {"b", 2}, {"a", 3}});
  REQUIRE(v.size() == 2);
  CHECK(v.as_object().at_index(0).first == "a");
  CHECK(v["a"].as_int() == 3);
  CHECK(v["b"].as_int() == 2);
  // Past the size where lookups go through the hash index.
  Value big = Value::object({{"k0", 0}, {"k1", 1}, {"k2", 2}, {"k3", 3}, {"k4", 4}, {"k5", 5}, {"k6", 6},
                             {"k7", 7}, {"k8", 8}, {"k9", 9}, {"k10", 10}, {"k11", 11}, {"k12", 12}, {"k13", 13}});
  REQUIRE(big.size() == 14);
  for (int i = 0; i < 14; ++i) CHECK(big["k" + std::to_string(i)].as_int() == i);
  CHECK(big.find("k14") == nullptr);
}

TEST_CASE("empty objects share one storage and a write unshares it", "[value]") {
  Value a = Value::object();
  Value b = Value::object();
  CHECK(a.shares_storage_with(b));
  a.set("x", 1);
  CHECK(a["x"].as_int() == 1);
  CHECK(b.size() == 0);
  CHECK(Value::object().size() == 0);
  b["y"] = 2;
  CHECK(a.find("y") == nullptr);
  CHECK(Value::object().find("y") == nullptr);
}

TEST_CASE("a copy of a large object keeps its own hash index", "[value]") {
  Value a = Value::object();
  for (int i = 0; i < 40; ++i) a.set("k" + std::to_string(i), i);
  Value b = a;
  b.set("k5", -5);   // unshares b: its members and index are copied
  b.set("new", 99);
  CHECK(a["k5"].as_int() == 5);
  CHECK(a.find("new") == nullptr);
  CHECK(b["k5"].as_int() == -5);
  CHECK(b["new"].as_int() == 99);
  CHECK(b["k39"].as_int() == 39);
  Object copied = b.as_object();
  Object assigned;
  assigned = copied;
  CHECK(assigned.find("new")->as_int() == 99);
  CHECK(assigned.erase("k0"));
  CHECK(assigned.find("k1")->as_int() == 1);
  CHECK(copied.find("k0")->as_int() == 0);
}

TEST_CASE("empty strings share one storage and a write unshares it", "[value]") {
  Value a{std::string()};
  Value b("");
  CHECK(a.shares_storage_with(b));
  a.mutable_string() += "x";
  CHECK(a.as_string() == "x");
  CHECK(b.as_string().empty());
  CHECK(Value("").as_string().empty());
}

TEST_CASE("arrays: shared_prefix counts what a copy still shares", "[value][array]") {
  Array a;
  for (int i = 0; i < 100; ++i) a.push_back(i);
  Array b = a;
  CHECK(a.shared_prefix(b) == 100);
  b.push_back(100);  // copies only the last chunk (elements 96..99)
  CHECK(a.shared_prefix(b) == 96);
  CHECK(b.shared_prefix(a) == 96);
  b[10] = -1;  // unshares the first chunk
  CHECK(a.shared_prefix(b) == 0);
  Array c;
  for (int i = 0; i < 100; ++i) c.push_back(i);
  CHECK(a.shared_prefix(c) == 0);  // equal, but not shared: it does not compare
  CHECK(a.shared_prefix(Array()) == 0);
}

TEST_CASE("objects keep their members through in-place and heap storage", "[value]") {
  // The first few members live inside the object; more move it to the heap.
  orch::Object o;
  for (int i = 0; i < 40; ++i) {
    o.set("key" + std::to_string(i), i);
    REQUIRE(o.size() == static_cast<size_t>(i + 1));
    for (int k = 0; k <= i; ++k) REQUIRE(o.find("key" + std::to_string(k))->as_int() == k);
  }
  int expected = 0;
  for (const auto& [key, value] : o) {
    CHECK(key == "key" + std::to_string(expected));
    CHECK(value.as_int() == expected++);
  }
  // Copies and moves of small (in place) and large objects.
  for (size_t n : {size_t{0}, size_t{1}, size_t{4}, size_t{5}, size_t{13}}) {
    orch::Object src;
    for (size_t i = 0; i < n; ++i) src.set("k" + std::to_string(i), Value("a long string value, not a short one " + std::to_string(i)));
    orch::Object copy(src);
    CHECK(copy == src);
    orch::Object moved(std::move(copy));
    CHECK(moved == src);
    CHECK(copy.size() == 0);  // NOLINT: a moved-from object is empty
    copy.set("again", 1);     // and usable
    CHECK(copy.size() == 1);
    orch::Object assigned;
    assigned.set("old", 1);
    assigned = std::move(moved);
    CHECK(assigned == src);
    orch::Object copied;
    copied.set("x", 1);
    copied = src;
    CHECK(copied == src);
    CHECK(copied.find("x") == nullptr);
    if (n > 0) {
      CHECK(copied.erase("k0"));
      CHECK(copied.size() == n - 1);
      if (n > 1) CHECK(copied.begin()->first == "k1");
      CHECK(src.size() == n);  // the original is untouched
    }
  }
  // A value set from a member of the same object while it grows.
  orch::Object self;
  for (int i = 0; i < 4; ++i) self.set("m" + std::to_string(i), Value("member " + std::to_string(i)));
  self.set("m4", *self.find("m0"));  // the fifth member: the storage moves
  CHECK(self.find("m4")->as_string() == "member 0");
  Value v = Value::object({{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}});
  Value w = v;
  w.set("e", 5);  // unshares, then grows past the in-place room
  CHECK(v.size() == 4);
  CHECK(w.size() == 5);
  CHECK(w["e"].as_int() == 5);
}

TEST_CASE("values made on one thread and dropped on others stay intact", "[value]") {
  // Storage freed on a thread is reused by that thread's next values.
  std::vector<Value> made;
  for (int i = 0; i < 300; ++i) {
    made.push_back(Value::object({{"i", i}, {"s", "a string long enough not to be inline " + std::to_string(i)},
                                  {"a", Value::array({i, i + 1})}}));
  }
  bool again_intact = true;  // Catch assertions stay on the test's thread
  std::thread dropper([&made, &again_intact] {
    for (size_t i = 0; i < made.size(); i += 2) made[i] = Value();
    std::vector<Value> again;
    for (int i = 0; i < 300; ++i) again.push_back(Value::object({{"again", i}}));
    for (int i = 0; i < 300; ++i) again_intact = again_intact && again[static_cast<size_t>(i)]["again"].as_int() == i;
  });
  dropper.join();
  CHECK(again_intact);
  for (size_t i = 1; i < made.size(); i += 2) {
    CHECK(made[i]["i"].as_int() == static_cast<int64_t>(i));
    CHECK(made[i]["s"].as_string() == "a string long enough not to be inline " + std::to_string(i));
    CHECK(made[i]["a"].size() == 2);
  }
  made.clear();
  for (int i = 0; i < 300; ++i) made.push_back(Value::object({{"later", i}}));
  CHECK(made.back()["later"].as_int() == 299);
}
