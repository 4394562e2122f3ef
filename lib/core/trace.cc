// SPDX-License-Identifier: MIT
// W3C trace context ids and the traceparent header (orch/trace.h).
#include "orch/trace.h"

#include <atomic>
#include <random>

namespace orch {
namespace {

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

// Span ids are made on whatever thread ends a worker call, often a fresh one:
// a per-thread generator would be seeded (a getrandom call and 2.5 KB of
// state) on every such thread. One process-wide splitmix64 sequence, seeded
// once, costs an atomic add. Ids must be unique and spread, not secret.
uint64_t next_random() {
  static std::atomic<uint64_t> state{(static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()};
  uint64_t z = state.fetch_add(0x9e3779b97f4a7c15ull, std::memory_order_relaxed) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string random_hex(size_t digits) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(digits, '0');
  do {
    for (size_t i = 0; i < digits; i += 16) {
      uint64_t bits = next_random();
      for (size_t j = i; j < digits && j < i + 16; ++j, bits >>= 4) out[j] = kHex[bits & 0xf];
    }
  } while (all_zero(out));
  return out;
}

}  // namespace

std::string TraceContext::traceparent() const {
  return "00-" + trace_id + "-" + span_id + (sampled ? "-01" : "-00");
}

std::optional<TraceContext> TraceContext::from_traceparent(std::string_view h) {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
  constexpr size_t kLength = 55;
  if (h.size() < kLength || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  std::string_view version = h.substr(0, 2), trace = h.substr(3, 32), span = h.substr(36, 16), flags = h.substr(53, 2);
  if (!is_lower_hex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (version == "00" ? h.size() != kLength : (h.size() > kLength && h[kLength] != '-')) return std::nullopt;
  if (!is_lower_hex(trace) || !is_lower_hex(span) || !is_lower_hex(flags)) return std::nullopt;
  if (all_zero(trace) || all_zero(span)) return std::nullopt;
  TraceContext ctx;
  ctx.trace_id = std::string(trace);
  ctx.span_id = std::string(span);
  const int flag_bits = std::stoi(std::string(flags), nullptr, 16);
  ctx.sampled = (flag_bits & 1) != 0;
  return ctx;
}

std::string new_trace_id() { return random_hex(32); }
std::string new_span_id() { return random_hex(16); }

const char* span_kind_name(SpanKind kind) {
  switch (kind) {
    case SpanKind::kRun: return "run";
    case SpanKind::kSuperstep: return "superstep";
    case SpanKind::kNode: return "node";
    case SpanKind::kWorkerCall: return "worker_call";
  }
  return "run";
}

const Value* Span::attribute(std::string_view key) const {
  for (const auto& [k, v] : attributes) {
    if (k == key) return &v;
  }
  return nullptr;
}

}  // namespace orch
