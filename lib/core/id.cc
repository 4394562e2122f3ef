// SPDX-License-Identifier: MIT
#include "orch/id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <cstdio>

namespace orch {
namespace {

// Ids name runs, steps and callback nonces, and some are guessable handles
// to a run: they come from the kernel's CSPRNG (getrandom), read 4 KB at a
// time per thread so an id costs no system call (a short run takes about ten
// ids: one getrandom call per 25 runs, not per 3).
class RandomBytes {
 public:
  uint64_t next() {
    if (used_ == sizeof(buf_)) refill();
    uint64_t v;
    std::memcpy(&v, buf_ + used_, sizeof(v));
    used_ += sizeof(v);
    return v;
  }

 private:
  void refill() {
    size_t filled = 0;
    while (filled < sizeof(buf_)) {
      ssize_t n = getrandom(buf_ + filled, sizeof(buf_) - filled, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        // No entropy source at all: ids must not be predictable, so stop.
        std::fprintf(stderr, "orch: getrandom failed: %s\n", std::strerror(errno));
        std::abort();
      }
      filled += static_cast<size_t>(n);
    }
    used_ = 0;
  }
  unsigned char buf_[4096];
  size_t used_ = sizeof(buf_);
};

}  // namespace

std::string new_uuid() {
  thread_local RandomBytes random;
  uint64_t hi = random.next();
  uint64_t lo = random.next();
  hi = (hi & ~uint64_t{0xF000}) | uint64_t{0x4000};         // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);  // RFC 4122 variant
  static const char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  size_t pos = 0;
  auto put = [&](uint64_t word, int nibbles_from, int count) {
    for (int i = 0; i < count; ++i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
      int shift = 60 - 4 * (nibbles_from + i);
      out[pos++] = kHex[(word >> shift) & 0xF];
    }
  };
  put(hi, 0, 16);
  put(lo, 0, 16);
  return out;
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

}  // namespace orch
