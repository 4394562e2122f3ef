// SPDX-License-Identifier: MIT
//
// Value: a JSON-shaped value, the currency of workflow state, inputs, configs
// and worker replies.
//
// A Value is null, a bool, an exact 64-bit integer, a double, a UTF-8 string,
// an array, or an object whose keys keep their insertion order.
//
// Copies are cheap: strings, arrays and objects are shared between copies and
// copied only when a copy that shares them is modified (copy-on-write), and
// then only one level deep (the children stay shared). The engine relies on
// this to snapshot state at every step.
//
// Thread-safety: a Value is a value type. Different Value objects may be read
// and written from different threads even when they share storage; a single
// Value object must not be written while another thread reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <type_traits>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"

namespace orch {

class Value;

// An insertion-ordered string → Value map. Setting an existing key keeps its
// position; new keys go to the end. Lookup is O(1) on large objects.
//
// The first few members live inside the Object itself: most objects are
// small (event data, step records, node updates), and a Value's object then
// takes one allocation (its shared storage) instead of two.
class ORCH_EXPORT Object {
 public:
  using Member = std::pair<std::string, Value>;
  using const_iterator = const Member*;
  using iterator = Member*;

  Object() = default;
  Object(std::initializer_list<Member> members);
  Object(const Object& other);
  Object& operator=(const Object& other);
  Object(Object&& other) noexcept;
  Object& operator=(Object&& other) noexcept;
  ~Object();

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  inline const_iterator begin() const;
  inline const_iterator end() const;
  // Values may be changed through these; keys must not be.
  inline iterator begin();
  inline iterator end();

  // Returns nullptr when `key` is absent.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  // Inserts or replaces; returns the stored value.
  Value& set(std::string key, Value value);
  // Returns the value at `key`, inserting null first if it is absent.
  Value& operator[](std::string_view key);
  // Removes `key`; returns false when it was absent. O(size).
  bool erase(std::string_view key);

  inline const Member& at_index(size_t i) const;
  void reserve(size_t n);

  friend bool operator==(const Object& a, const Object& b);

 private:
  friend class Value;  // builds objects in place
  static constexpr size_t kInlineMembers = 4;
  // Room for one Member (checked in value.cc: a std::string and a Value).
  static constexpr size_t kMemberBytes = 56;

  void append_or_replace(std::string_view key, const Value& value);
  ptrdiff_t index_of(std::string_view key) const;
  void rebuild_index();
  Member* inline_members() { return reinterpret_cast<Member*>(inline_); }
  bool on_heap() const { return members_ != reinterpret_cast<const Member*>(inline_); }
  // Appends a member built from `args` (which may refer into this object).
  template <class... Args>
  Member& emplace_member(Args&&... args);
  void destroy_members();                // destroys them all; keeps the storage
  void take_members(Object&& other);     // REQUIRES: this holds none, in inline storage

  Member* members_ = inline_members();   // inline_ or a heap array of capacity_
  size_t size_ = 0;
  size_t capacity_ = kInlineMembers;
  // Built once the object grows past a small size; linear search is faster
  // below. Held by pointer so that the many small objects stay small and cheap
  // to create, move and destroy.
  std::unique_ptr<std::unordered_map<std::string, size_t>> index_;
  alignas(8) unsigned char inline_[kInlineMembers * kMemberBytes];
};

// A sequence of Values with std::vector's reading interface, stored in
// shared chunks of 32: copying an array copies its chunk list, not its
// elements, and appending to a copy copies at most the last chunk. So a state
// list that every checkpoint snapshots grows in O(1) per append instead of
// O(length).
//
// Writes (operator[], push_back, dereferencing a non-const iterator...) first
// unshare the chunk they touch. References obtained through a non-const Array
// are invalidated by copying that Array or by changing its size.
class ORCH_EXPORT Array {
 public:
  using value_type = Value;
  using size_type = size_t;
  using difference_type = ptrdiff_t;
  using reference = Value&;
  using const_reference = const Value&;
  // Random-access iterator over an Array (an index into it).
  template <bool Const>
  class Iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = Value;
    using difference_type = ptrdiff_t;
    using reference = std::conditional_t<Const, const Value&, Value&>;
    using pointer = std::conditional_t<Const, const Value*, Value*>;
    using Owner = std::conditional_t<Const, const Array, Array>;

    Iterator() = default;
    Iterator(Owner* array, size_t index) : array_(array), index_(index) {}
    // iterator -> const_iterator
    template <bool C = Const, class = std::enable_if_t<C>>
    Iterator(const Iterator<false>& other) : array_(other.array_), index_(other.index_) {}  // NOLINT

    // Through a non-const iterator, the chunk is unshared on first access.
    reference operator*() const {
      if constexpr (Const) {
        return (*array_->chunks_[index_ >> kChunkBits])[index_ & (kChunkSize - 1)];
      } else {
        return (*array_)[index_];
      }
    }
    pointer operator->() const { return &**this; }
    reference operator[](difference_type n) const { return *(*this + n); }
    Iterator& operator++() { ++index_; return *this; }
    Iterator operator++(int) { Iterator t = *this; ++index_; return t; }
    Iterator& operator--() { --index_; return *this; }
    Iterator operator--(int) { Iterator t = *this; --index_; return t; }
    Iterator& operator+=(difference_type n) { index_ = static_cast<size_t>(static_cast<difference_type>(index_) + n); return *this; }
    Iterator& operator-=(difference_type n) { return *this += -n; }
    friend Iterator operator+(Iterator it, difference_type n) { return it += n; }
    friend Iterator operator+(difference_type n, Iterator it) { return it += n; }
    friend Iterator operator-(Iterator it, difference_type n) { return it -= n; }
    friend difference_type operator-(const Iterator& a, const Iterator& b) {
      return static_cast<difference_type>(a.index_) - static_cast<difference_type>(b.index_);
    }
    friend bool operator==(const Iterator& a, const Iterator& b) { return a.index_ == b.index_; }
    friend bool operator!=(const Iterator& a, const Iterator& b) { return a.index_ != b.index_; }
    friend bool operator<(const Iterator& a, const Iterator& b) { return a.index_ < b.index_; }
    friend bool operator>(const Iterator& a, const Iterator& b) { return a.index_ > b.index_; }
    friend bool operator<=(const Iterator& a, const Iterator& b) { return a.index_ <= b.index_; }
    friend bool operator>=(const Iterator& a, const Iterator& b) { return a.index_ >= b.index_; }

    size_t index() const { return index_; }

   private:
    friend class Array;
    friend class Iterator<!Const>;
    Owner* array_ = nullptr;
    size_t index_ = 0;
  };
  using iterator = Iterator<false>;
  using const_iterator = Iterator<true>;

  Array() = default;
  Array(std::initializer_list<Value> items);
  Array(const std::vector<Value>& items);  // NOLINT: a vector converts, as when Array was one
  template <class It, class = decltype(*std::declval<It&>())>
  Array(It first, It last) {
    for (; first != last; ++first) push_back(*first);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  inline const Value& operator[](size_t i) const;
  Value& operator[](size_t i);
  const Value& front() const { return (*this)[0]; }
  const Value& back() const { return (*this)[size_ - 1]; }

  inline const_iterator begin() const;
  inline const_iterator end() const;
  using const_reverse_iterator = std::reverse_iterator<const_iterator>;
  const_reverse_iterator rbegin() const { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const { return const_reverse_iterator(begin()); }
  inline const_iterator cbegin() const;
  inline const_iterator cend() const;
  // Dereferencing a non-const iterator unshares the chunk it points into.
  iterator begin() { return iterator(this, 0); }
  iterator end() { return iterator(this, size_); }

  void push_back(Value v);
  template <class... Args>
  Value& emplace_back(Args&&... args);
  // Inserting at end() appends; anywhere else rebuilds the array.
  template <class It>
  iterator insert(const_iterator pos, It first, It last);
  // Removes [first, last).
  iterator erase(const_iterator first, const_iterator last);
  iterator erase(const_iterator pos);
  void pop_back();
  void clear();
  void reserve(size_t n);

  // How many leading elements this array and `other` hold in storage they
  // still share (a copy and its original, before either changed there): those
  // are the same without comparing them. Cheap: one check per 32 elements.
  size_t shared_prefix(const Array& other) const;

  friend ORCH_EXPORT bool operator==(const Array& a, const Array& b);
  friend bool operator!=(const Array& a, const Array& b) { return !(a == b); }

 private:
  static constexpr size_t kChunkBits = 5;
  static constexpr size_t kChunkSize = size_t{1} << kChunkBits;
  using Chunk = std::vector<Value>;

  Value& back_for_write();
  std::vector<Value> take_all() const;  // a flat copy
  void assign_all(std::vector<Value> items);

  std::vector<std::shared_ptr<Chunk>> chunks_;  // all full but the last
  size_t size_ = 0;
};

class ORCH_EXPORT Value {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Value() = default;
  Value(std::nullptr_t) {}  // NOLINT
  Value(bool b) : rep_(b) {}  // NOLINT
  Value(int i) : rep_(static_cast<int64_t>(i)) {}  // NOLINT
  Value(long i) : rep_(static_cast<int64_t>(i)) {}  // NOLINT
  Value(long long i) : rep_(static_cast<int64_t>(i)) {}  // NOLINT
  Value(unsigned u) : rep_(static_cast<int64_t>(u)) {}  // NOLINT
  // Unsigned values above INT64_MAX become doubles.
  Value(unsigned long u) : Value(static_cast<unsigned long long>(u)) {}  // NOLINT
  Value(unsigned long long u);  // NOLINT
  Value(double d) : rep_(d) {}  // NOLINT
  Value(const char* s) : Value(std::string(s)) {}  // NOLINT
  Value(std::string_view s) : Value(std::string(s)) {}  // NOLINT
  Value(std::string s);  // NOLINT
  Value(Array a);  // NOLINT
  Value(Object o);  // NOLINT

  static Value array(std::initializer_list<Value> items = {}) { return Value(Array(items)); }
  // Keys are copied once, straight into the object (a repeated key: the later
  // value wins, as with set).
  static Value object(std::initializer_list<std::pair<std::string_view, Value>> members = {});

  Type type() const { return static_cast<Type>(rep_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_double() const { return type() == Type::kDouble; }
  bool is_number() const { return is_int() || is_double(); }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Typed reads. REQUIRES: the matching type (as_double also accepts an int).
  bool as_bool() const { return std::get<bool>(rep_); }
  int64_t as_int() const { return std::get<int64_t>(rep_); }
  double as_double() const;
  const std::string& as_string() const { return *std::get<StringPtr>(rep_); }
  const Array& as_array() const { return *std::get<ArrayPtr>(rep_); }
  const Object& as_object() const { return *std::get<ObjectPtr>(rep_); }

  // Lenient reads with a fallback for any other type.
  bool get_bool(bool fallback) const { return is_bool() ? as_bool() : fallback; }
  int64_t get_int(int64_t fallback) const;  // doubles with an exact integer value count
  double get_double(double fallback) const { return is_number() ? as_double() : fallback; }
  std::string get_string(std::string_view fallback) const;

  // Mutable access: unshares the container first. A null Value becomes an empty
  // array/object. REQUIRES: null or the matching type.
  Array& mutable_array();
  Object& mutable_object();
  std::string& mutable_string();

  // Size of an array, object or string (bytes); 0 for anything else.
  size_t size() const;

  // Object member lookup; nullptr when this is not an object or lacks `key`.
  const Value* find(std::string_view key) const;
  // Array element; nullptr when out of range or not an array.
  const Value* at(size_t index) const;
  // Object member or null (never throws).
  const Value& operator[](std::string_view key) const;
  // Object member, inserted as null if absent (a null Value becomes an object).
  Value& operator[](std::string_view key) { return mutable_object()[key]; }
  void set(std::string key, Value v) { mutable_object().set(std::move(key), std::move(v)); }
  void push_back(Value v);

  // Dotted paths: "a.b.0.c" walks object keys and, where the current value is an
  // array, numeric indices. The empty path is the value itself.
  const Value* find_path(std::string_view path) const;
  // Sets the value at `path`, creating objects for missing segments. Fails with
  // InvalidArgument when a segment crosses a scalar or indexes past an array.
  Status set_path(std::string_view path, Value v);

  // Compact JSON text. Doubles print in shortest round-trip form (0.1 → "0.1",
  // 1.0 → "1.0"); NaN and infinities, which JSON cannot hold, print as null.
  std::string to_json() const;
  // Appends the compact JSON text to `out`.
  void write_json(std::string* out) const;

  // True when both share the same storage (cheap identity check, used to skip
  // unchanged values when diffing states).
  bool shares_storage_with(const Value& other) const;

  // Deep equality. An int and a double are equal when they hold the same number.
  friend ORCH_EXPORT bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  using StringPtr = std::shared_ptr<std::string>;
  using ArrayPtr = std::shared_ptr<Array>;
  using ObjectPtr = std::shared_ptr<Object>;
  std::variant<std::monostate, bool, int64_t, double, StringPtr, ArrayPtr, ObjectPtr> rep_;
};

// Returns the JSON name of a type: "null", "boolean", "integer", "number",
// "string", "array", "object".
ORCH_EXPORT std::string_view type_name(Value::Type type);

inline Object::const_iterator Object::begin() const { return members_; }
inline Object::const_iterator Object::end() const { return members_ + size_; }
inline Object::iterator Object::begin() { return members_; }
inline Object::iterator Object::end() { return members_ + size_; }
inline const Object::Member& Object::at_index(size_t i) const { return members_[i]; }

inline const Value& Array::operator[](size_t i) const { return (*chunks_[i >> kChunkBits])[i & (kChunkSize - 1)]; }
inline Array::const_iterator Array::begin() const { return const_iterator(this, 0); }
inline Array::const_iterator Array::end() const { return const_iterator(this, size_); }
inline Array::const_iterator Array::cbegin() const { return begin(); }
inline Array::const_iterator Array::cend() const { return end(); }

template <class... Args>
Value& Array::emplace_back(Args&&... args) {
  push_back(Value(std::forward<Args>(args)...));
  return back_for_write();
}

template <class It>
Array::iterator Array::insert(const_iterator pos, It first, It last) {
  const size_t at = pos.index();
  if (at == size_) {
    for (; first != last; ++first) push_back(*first);
    return iterator(this, at);
  }
  std::vector<Value> all = take_all();
  all.insert(all.begin() + static_cast<ptrdiff_t>(at), first, last);
  assign_all(std::move(all));
  return iterator(this, at);
}

// JSON parsing limits and rules.
struct ParseOptions {
  // Arrays and objects nested deeper than this are rejected with an error (the
  // parser is iterative, so depth never threatens the stack).
  size_t max_depth = 512;
};

// Parses JSON text (RFC 8259). Errors are InvalidArgument with a message that
// names the byte offset, e.g. "invalid JSON at byte 7: missing a comma or '}'".
// Invalid UTF-8 is rejected. When an object repeats a key the last occurrence
// wins and keeps the position of the first. Integers that fit in int64 stay
// exact; larger ones and numbers with a fraction or exponent become doubles.
// When `error_offset` is given it receives the byte offset of an error.
ORCH_EXPORT Result<Value> parse_json(std::string_view text, const ParseOptions& options = {},
                                     size_t* error_offset = nullptr);

}  // namespace orch
