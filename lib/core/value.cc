// SPDX-License-Identifier: MIT
#include "orch/value.h"

#include "core/block_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace orch {
namespace {

// Below this many members a linear scan beats hashing.
constexpr size_t kIndexThreshold = 12;

const Value& null_value() {
  static const Value kNull;
  return kNull;
}

// Parses a non-negative decimal array index; false for anything else.
bool parse_index(std::string_view s, size_t* out) {
  if (s.empty() || s.size() > 18) return false;
  size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

namespace {
// A Value's shared storage comes from per-thread block caches (see there).
template <class T, class... Args>
std::shared_ptr<T> new_shared(Args&&... args) {
  return internal::make_cached_shared<T>(std::forward<Args>(args)...);
}

// A CachedAllocator that builds what it is asked to build without arguments
// by default-initialization. make_shared value-initializes: for an Object that
// first zeroes its inline member storage (over 200 bytes, a `rep stos`), for
// every object the engine builds.
template <class T>
struct DefaultInitAllocator : internal::CachedAllocator<T> {
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) {}  // NOLINT: rebinding
  template <class U>
  void construct(U* p) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// An empty Object in shared storage (see DefaultInitAllocator).
std::shared_ptr<Object> new_empty_object() { return std::allocate_shared<Object>(DefaultInitAllocator<Object>()); }

}  // namespace

// ---------------------------------------------------------------- Object

static_assert(sizeof(Object::Member) <= 56 && alignof(Object::Member) <= 8,
              "Object::kMemberBytes must hold a Member");

namespace {
// Member arrays just past the inline members (5 to 8: a node's __meta, a
// state of a few keys) come from a per-thread block cache, as Values' shared
// storage does: each such object took a malloc and a free of its own.
constexpr size_t kCachedMemberCapacity = 8;
#if ORCH_BLOCK_CACHE
using MemberBlocks = internal::BlockCache<kCachedMemberCapacity * sizeof(Object::Member)>;
#endif

// Room for at least *n members; *n becomes the capacity given.
Object::Member* allocate_members(size_t* n) {
  if (*n <= kCachedMemberCapacity) {
    *n = kCachedMemberCapacity;
#if ORCH_BLOCK_CACHE
    return static_cast<Object::Member*>(MemberBlocks::take());
#endif
  }
  return static_cast<Object::Member*>(::operator new(*n * sizeof(Object::Member)));
}

void free_members(Object::Member* members, size_t capacity) {
#if ORCH_BLOCK_CACHE
  if (capacity == kCachedMemberCapacity) return MemberBlocks::give(members);
#endif
  (void)capacity;
  ::operator delete(members);
}
}  // namespace

Object::Object(std::initializer_list<Member> members) {
  reserve(members.size());
  for (const auto& m : members) append_or_replace(m.first, m.second);
  if (size_ > kIndexThreshold) rebuild_index();
}

Object::~Object() {
  destroy_members();
  if (on_heap()) free_members(members_, capacity_);
}

void Object::destroy_members() {
  for (size_t i = size_; i > 0; --i) members_[i - 1].~Member();
  size_ = 0;
}

void Object::reserve(size_t n) {
  if (n <= capacity_) return;
  Member* fresh = allocate_members(&n);
  for (size_t i = 0; i < size_; ++i) {
    new (fresh + i) Member(std::move(members_[i]));
    members_[i].~Member();
  }
  if (on_heap()) free_members(members_, capacity_);
  members_ = fresh;
  capacity_ = n;
}

template <class... Args>
Object::Member& Object::emplace_member(Args&&... args) {
  if (size_ == capacity_) {
    // Built first: the arguments may refer to a member about to move.
    Member built(std::forward<Args>(args)...);
    reserve(capacity_ * 2);
    return *new (members_ + size_++) Member(std::move(built));
  }
  return *new (members_ + size_++) Member(std::forward<Args>(args)...);
}

void Object::take_members(Object&& other) {
  if (other.on_heap()) {
    members_ = other.members_;
    capacity_ = other.capacity_;
    size_ = other.size_;
    other.members_ = other.inline_members();
    other.capacity_ = kInlineMembers;
  } else {
    for (size_t i = 0; i < other.size_; ++i) new (members_ + i) Member(std::move(other.members_[i]));
    size_ = other.size_;
    other.destroy_members();
  }
  other.size_ = 0;
  index_ = std::move(other.index_);
}

Object::Object(Object&& other) noexcept { take_members(std::move(other)); }

Object& Object::operator=(Object&& other) noexcept {
  if (this != &other) {
    destroy_members();
    if (on_heap()) free_members(members_, capacity_);
    members_ = inline_members();
    capacity_ = kInlineMembers;
    take_members(std::move(other));
  }
  return *this;
}

void Object::append_or_replace(std::string_view key, const Value& value) {
  // For building small objects: a repeated key (the later one wins, as with
  // set) is looked for only among those already in, without the index.
  for (Member& existing : *this) {
    if (existing.first == key) {
      existing.second = value;
      return;
    }
  }
  // The key is built in place: a temporary moved in copied it twice.
  emplace_member(std::piecewise_construct, std::forward_as_tuple(key), std::forward_as_tuple(value));
}

Object::Object(const Object& other) { *this = other; }

Object& Object::operator=(const Object& other) {
  if (this != &other) {
    destroy_members();
    reserve(other.size_);  // keeps this object's capacity when it suffices
    for (const Member& m : other) new (members_ + size_++) Member(m);
    index_ = other.index_ ? std::make_unique<std::unordered_map<std::string, size_t>>(*other.index_) : nullptr;
  }
  return *this;
}

ptrdiff_t Object::index_of(std::string_view key) const {
  if (index_) {
    auto it = index_->find(std::string(key));
    return it == index_->end() ? -1 : static_cast<ptrdiff_t>(it->second);
  }
  for (size_t i = 0; i < size_; ++i) {
    if (members_[i].first == key) return static_cast<ptrdiff_t>(i);
  }
  return -1;
}

const Value* Object::find(std::string_view key) const {
  ptrdiff_t i = index_of(key);
  return i < 0 ? nullptr : &members_[static_cast<size_t>(i)].second;
}

Value* Object::find(std::string_view key) {
  ptrdiff_t i = index_of(key);
  return i < 0 ? nullptr : &members_[static_cast<size_t>(i)].second;
}

Value& Object::set(std::string key, Value value) {
  ptrdiff_t i = index_of(key);
  if (i >= 0) {
    Value& slot = members_[static_cast<size_t>(i)].second;
    slot = std::move(value);
    return slot;
  }
  if (index_) index_->emplace(key, size_);
  Value& stored = emplace_member(std::move(key), std::move(value)).second;
  if (!index_ && size_ > kIndexThreshold) rebuild_index();
  return stored;
}

Value& Object::operator[](std::string_view key) {
  if (Value* v = find(key)) return *v;
  return set(std::string(key), Value());
}

bool Object::erase(std::string_view key) {
  ptrdiff_t i = index_of(key);
  if (i < 0) return false;
  for (size_t k = static_cast<size_t>(i) + 1; k < size_; ++k) members_[k - 1] = std::move(members_[k]);
  members_[--size_].~Member();
  index_.reset();
  if (size_ > kIndexThreshold) rebuild_index();
  return true;
}

void Object::rebuild_index() {
  index_ = std::make_unique<std::unordered_map<std::string, size_t>>();
  index_->reserve(size_ * 2);
  for (size_t i = 0; i < size_; ++i) index_->emplace(members_[i].first, i);
}

bool operator==(const Object& a, const Object& b) {
  if (a.size() != b.size()) return false;
  // Key order is not part of equality: {"a":1,"b":2} equals {"b":2,"a":1}.
  for (const auto& m : a) {
    const Value* other = b.find(m.first);
    if (other == nullptr || !(*other == m.second)) return false;
  }
  return true;
}

// ---------------------------------------------------------------- Array

namespace {
// Fills an empty Array's chunk list straight from [first, last), each chunk
// allocated at its final size: appending element by element regrew the
// first chunk once per doubling.
template <class Chunks, class It>
void fill_chunks(Chunks& chunks, size_t& size, It first, It last, size_t chunk_size) {
  using Chunk = typename Chunks::value_type::element_type;
  size_t left = static_cast<size_t>(last - first);
  chunks.reserve((left + chunk_size - 1) / chunk_size);
  while (left > 0) {
    const size_t n = std::min(left, chunk_size);
    auto chunk = new_shared<Chunk>();
    chunk->reserve(n);
    for (size_t k = 0; k < n; ++k) chunk->push_back(*first++);
    chunks.push_back(std::move(chunk));
    size += n;
    left -= n;
  }
}
}  // namespace

Array::Array(std::initializer_list<Value> items) { fill_chunks(chunks_, size_, items.begin(), items.end(), kChunkSize); }

Array::Array(const std::vector<Value>& items) { fill_chunks(chunks_, size_, items.begin(), items.end(), kChunkSize); }

Value& Array::operator[](size_t i) {
  std::shared_ptr<Chunk>& chunk = chunks_[i >> kChunkBits];
  if (chunk.use_count() > 1) chunk = new_shared<Chunk>(*chunk);
  return (*chunk)[i & (kChunkSize - 1)];
}

void Array::push_back(Value v) {
  if ((size_ & (kChunkSize - 1)) == 0) {
    auto chunk = new_shared<Chunk>();
    // Most arrays are small: the first chunk grows as a vector does; later
    // chunks (a long list) take their full size at once.
    if (!chunks_.empty()) chunk->reserve(kChunkSize);
    chunks_.push_back(std::move(chunk));
  } else if (chunks_.back().use_count() > 1) {
    // The last chunk is shared with a copy of this array: copy it (at most
    // kChunkSize elements) with room for this one. No more: the usual sharer
    // is a checkpoint, and the next append, after the next checkpoint, copies
    // the chunk again, so spare room would only be carried in every snapshot.
    auto chunk = new_shared<Chunk>();
    chunk->reserve(chunks_.back()->size() + 1);
    chunk->insert(chunk->end(), chunks_.back()->begin(), chunks_.back()->end());
    chunks_.back() = std::move(chunk);
  }
  chunks_.back()->push_back(std::move(v));
  ++size_;
}

Value& Array::back_for_write() { return (*this)[size_ - 1]; }

size_t Array::shared_prefix(const Array& other) const {
  // A chunk both arrays point at holds the same elements for both: a write
  // copies a shared chunk first.
  size_t chunks = 0;
  const size_t limit = std::min(chunks_.size(), other.chunks_.size());
  while (chunks < limit && chunks_[chunks] == other.chunks_[chunks]) ++chunks;
  return std::min({chunks * kChunkSize, size_, other.size_});
}

std::vector<Value> Array::take_all() const {
  std::vector<Value> all;
  all.reserve(size_);
  for (const auto& chunk : chunks_) all.insert(all.end(), chunk->begin(), chunk->end());
  return all;
}

void Array::assign_all(std::vector<Value> items) {
  chunks_.clear();
  size_ = 0;
  reserve(items.size());
  for (Value& v : items) push_back(std::move(v));
}

Array::iterator Array::erase(const_iterator first, const_iterator last) {
  const size_t from = first.index(), to = last.index();
  if (from >= to) return iterator(this, from);
  if (to == size_) {
    // Truncation keeps the chunks before `from` shared.
    const size_t keep_chunks = (from + kChunkSize - 1) >> kChunkBits;
    chunks_.resize(keep_chunks);
    if ((from & (kChunkSize - 1)) != 0) {
      std::shared_ptr<Chunk>& tail = chunks_.back();
      if (tail.use_count() > 1) tail = new_shared<Chunk>(*tail);
      tail->resize(from & (kChunkSize - 1));
    }
    size_ = from;
    return iterator(this, from);
  }
  std::vector<Value> all = take_all();
  all.erase(all.begin() + static_cast<ptrdiff_t>(from), all.begin() + static_cast<ptrdiff_t>(to));
  assign_all(std::move(all));
  return iterator(this, from);
}

Array::iterator Array::erase(const_iterator pos) { return erase(pos, pos + 1); }

void Array::pop_back() {
  const Array& self = *this;
  erase(self.end() - 1, self.end());
}

void Array::clear() {
  chunks_.clear();
  size_ = 0;
}

void Array::reserve(size_t n) { chunks_.reserve((n + kChunkSize - 1) >> kChunkBits); }

bool operator==(const Array& a, const Array& b) {
  if (a.size_ != b.size_) return false;
  for (size_t c = 0; c < a.chunks_.size(); ++c) {
    if (a.chunks_[c] == b.chunks_[c]) continue;  // shared chunk
    if (*a.chunks_[c] != *b.chunks_[c]) return false;
  }
  return true;
}

// ---------------------------------------------------------------- Value

Value::Value(unsigned long long u) {
  if (u <= static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
    rep_ = static_cast<int64_t>(u);
  } else {
    rep_ = static_cast<double>(u);
  }
}

namespace {
// Empty strings are common (no prompt, no output): they share one storage.
// Never destroyed, so it outlives every static that holds a copy.
const std::shared_ptr<std::string>& empty_string_storage() {
  static const auto* const kEmpty = new std::shared_ptr<std::string>(std::make_shared<std::string>());
  return *kEmpty;
}
}  // namespace

Value::Value(std::string s)
    : rep_(s.empty() ? empty_string_storage() : new_shared<std::string>(std::move(s))) {}
Value::Value(Array a) : rep_(new_shared<Array>(std::move(a))) {}
Value::Value(Object o) : rep_(new_shared<Object>(std::move(o))) {}

Value Value::object(std::initializer_list<std::pair<std::string_view, Value>> members) {
  if (members.size() == 0) {
    // Empty objects are everywhere (defaults, builders): they share one, which
    // copy-on-write unshares when a copy is changed. Never destroyed, so it
    // outlives every static that holds a copy.
    static const Value* const kEmpty = new Value(Object());
    return *kEmpty;
  }
  // The engine builds many small objects this way: built in place.
  auto o = new_empty_object();
  o->reserve(members.size());
  for (const auto& m : members) o->append_or_replace(m.first, m.second);
  if (o->size_ > kIndexThreshold) o->rebuild_index();
  Value v;
  v.rep_ = std::move(o);
  return v;
}

double Value::as_double() const {
  if (is_int()) return static_cast<double>(std::get<int64_t>(rep_));
  return std::get<double>(rep_);
}

int64_t Value::get_int(int64_t fallback) const {
  if (is_int()) return as_int();
  if (is_double()) {
    double d = std::get<double>(rep_);
    // 2^63 is exactly representable; anything >= it (or NaN) does not fit.
    if (std::isfinite(d) && d == std::trunc(d) && d >= -9223372036854775808.0 &&
        d < 9223372036854775808.0) {
      return static_cast<int64_t>(d);
    }
  }
  return fallback;
}

std::string Value::get_string(std::string_view fallback) const {
  return is_string() ? as_string() : std::string(fallback);
}

Array& Value::mutable_array() {
  if (is_null()) rep_ = new_shared<Array>();
  auto& p = std::get<ArrayPtr>(rep_);
  if (p.use_count() > 1) p = new_shared<Array>(*p);
  return *p;
}

Object& Value::mutable_object() {
  if (is_null()) rep_ = new_empty_object();
  auto& p = std::get<ObjectPtr>(rep_);
  if (p.use_count() > 1) {
    // A copy made to be changed is usually grown next: room for one more
    // member saves moving them all again.
    auto copy = new_empty_object();
    copy->reserve(p->size_ + 1);
    *copy = *p;
    p = std::move(copy);
  }
  return *p;
}

std::string& Value::mutable_string() {
  if (is_null()) rep_ = new_shared<std::string>();
  auto& p = std::get<StringPtr>(rep_);
  if (p.use_count() > 1) p = new_shared<std::string>(*p);
  return *p;
}

size_t Value::size() const {
  switch (type()) {
    case Type::kString: return as_string().size();
    case Type::kArray: return as_array().size();
    case Type::kObject: return as_object().size();
    default: return 0;
  }
}

const Value* Value::find(std::string_view key) const {
  return is_object() ? as_object().find(key) : nullptr;
}

const Value* Value::at(size_t index) const {
  if (!is_array() || index >= as_array().size()) return nullptr;
  return &as_array()[index];
}

const Value& Value::operator[](std::string_view key) const {
  const Value* v = find(key);
  return v ? *v : null_value();
}

void Value::push_back(Value v) { mutable_array().push_back(std::move(v)); }

const Value* Value::find_path(std::string_view path) const {
  const Value* cur = this;
  while (!path.empty()) {
    size_t dot = path.find('.');
    std::string_view seg = path.substr(0, dot);
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    if (cur->is_object()) {
      cur = cur->as_object().find(seg);
    } else if (cur->is_array()) {
      size_t idx = 0;
      cur = parse_index(seg, &idx) ? cur->at(idx) : nullptr;
    } else {
      return nullptr;
    }
    if (cur == nullptr) return nullptr;
  }
  return cur;
}

Status Value::set_path(std::string_view path, Value v) {
  Value* cur = this;
  while (!path.empty()) {
    size_t dot = path.find('.');
    std::string_view seg = path.substr(0, dot);
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    if (cur->is_array()) {
      size_t idx = 0;
      Array& arr = cur->mutable_array();
      if (!parse_index(seg, &idx) || idx > arr.size()) {
        return Status::invalid_argument("path segment '" + std::string(seg) +
                                        "' is not a valid index into an array of " +
                                        std::to_string(arr.size()));
      }
      if (idx == arr.size()) arr.emplace_back();
      cur = &arr[idx];
    } else if (cur->is_null() || cur->is_object()) {
      cur = &cur->mutable_object()[seg];
    } else {
      return Status::invalid_argument("path segment '" + std::string(seg) + "' crosses a " +
                                      std::string(type_name(cur->type())));
    }
  }
  *cur = std::move(v);
  return Status();
}

bool Value::shares_storage_with(const Value& other) const {
  if (rep_.index() != other.rep_.index()) return false;
  switch (type()) {
    case Type::kString: return std::get<StringPtr>(rep_) == std::get<StringPtr>(other.rep_);
    case Type::kArray: return std::get<ArrayPtr>(rep_) == std::get<ArrayPtr>(other.rep_);
    case Type::kObject: return std::get<ObjectPtr>(rep_) == std::get<ObjectPtr>(other.rep_);
    default: return false;
  }
}

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.type() != b.type()) return false;
  if (a.shares_storage_with(b)) return true;
  switch (a.type()) {
    case Value::Type::kNull: return true;
    case Value::Type::kBool: return a.as_bool() == b.as_bool();
    case Value::Type::kString: return a.as_string() == b.as_string();
    case Value::Type::kArray: return a.as_array() == b.as_array();
    case Value::Type::kObject: return a.as_object() == b.as_object();
    default: return false;
  }
}

std::string_view type_name(Value::Type type) {
  switch (type) {
    case Value::Type::kNull: return "null";
    case Value::Type::kBool: return "boolean";
    case Value::Type::kInt: return "integer";
    case Value::Type::kDouble: return "number";
    case Value::Type::kString: return "string";
    case Value::Type::kArray: return "array";
    case Value::Type::kObject: return "object";
  }
  return "unknown";
}

}  // namespace orch
