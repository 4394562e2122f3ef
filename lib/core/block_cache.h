// SPDX-License-Identifier: MIT
//
// Per-thread caches of freed memory blocks of one size (not installed), for
// what the engine allocates and frees by the dozen per run: a Value's shared
// storage, a run's context. glibc's own per-thread cache keeps only 7 blocks
// of a size, so most of these went through its slower paths. A block freed on
// another thread joins that thread's cache; each cache keeps at most about
// 32 KB. Sanitizer builds use plain new/delete, so that a use after free is
// still caught.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ORCH_BLOCK_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define ORCH_BLOCK_CACHE 0
#endif
#endif
#ifndef ORCH_BLOCK_CACHE
#define ORCH_BLOCK_CACHE 1
#endif

namespace orch::internal {

// Freed blocks of kSize bytes, per thread.
template <size_t kSize>
class BlockCache {
 public:
  static constexpr size_t kMaxBlocks = kSize >= 8192 ? 4 : 32768 / kSize;

  ~BlockCache() {
    gone() = true;  // blocks freed during this thread's exit go straight back
    while (head_ != nullptr) {
      FreeBlock* next = head_->next;
      ::operator delete(head_);
      head_ = next;
    }
  }
  static void* take() {
    if (!gone()) {
      BlockCache& c = mine();
      if (c.head_ != nullptr) {
        FreeBlock* b = c.head_;
        c.head_ = b->next;
        --c.count_;
        return b;
      }
    }
    return ::operator new(kSize);
  }
  static void give(void* p) {
    if (!gone()) {
      BlockCache& c = mine();
      if (c.count_ < kMaxBlocks) {
        c.head_ = new (p) FreeBlock{c.head_};
        ++c.count_;
        return;
      }
    }
    ::operator delete(p);
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  static BlockCache& mine() {
    thread_local BlockCache cache;
    return cache;
  }
  // Trivially destructible: still readable while the thread's caches go.
  static bool& gone() {
    thread_local bool flag = false;
    return flag;
  }
  FreeBlock* head_ = nullptr;
  size_t count_ = 0;
};

// An allocator for std::allocate_shared that takes single blocks from the
// BlockCache of their size.
template <class T>
struct CachedAllocator {
  using value_type = T;
  CachedAllocator() = default;
  template <class U>
  CachedAllocator(const CachedAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) {
#if ORCH_BLOCK_CACHE
    if (n == 1) return static_cast<T*>(BlockCache<sizeof(T)>::take());
#endif
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
#if ORCH_BLOCK_CACHE
    if (n == 1) return BlockCache<sizeof(T)>::give(p);
#endif
    (void)n;
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const CachedAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const CachedAllocator<U>&) const { return false; }
};

// std::make_shared with a CachedAllocator.
template <class T, class... Args>
std::shared_ptr<T> make_cached_shared(Args&&... args) {
  return std::allocate_shared<T>(CachedAllocator<T>(), std::forward<Args>(args)...);
}

}  // namespace orch::internal
