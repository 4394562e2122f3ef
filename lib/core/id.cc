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

// The two lowercase hex digits of every byte.
struct HexPairs {
  char digits[256][2];
  constexpr HexPairs() : digits() {
    constexpr char kHex[] = "0123456789abcdef";
    for (int b = 0; b < 256; ++b) {
      digits[b][0] = kHex[b >> 4];
      digits[b][1] = kHex[b & 0xF];
    }
  }
};
constexpr HexPairs kHexPairs;

}  // namespace

std::string new_uuid() {
  thread_local RandomBytes random;
  uint64_t hi = random.next();
  uint64_t lo = random.next();
  hi = (hi & ~uint64_t{0xF000}) | uint64_t{0x4000};         // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);  // RFC 4122 variant
  // Each byte's two digits are copied to their place (8-4-4-4-12) from a
  // table: formatting digit by digit, checking for a dash at each, took about
  // 100 instructions more an id (a short run takes about ten ids).
  static constexpr unsigned char kAt[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
  std::string out(36, '-');
  char* p = out.data();
  for (int k = 0; k < 8; ++k) {
    std::memcpy(p + kAt[k], kHexPairs.digits[(hi >> (56 - 8 * k)) & 0xFF], 2);
    std::memcpy(p + kAt[k + 8], kHexPairs.digits[(lo >> (56 - 8 * k)) & 0xFF], 2);
  }
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
