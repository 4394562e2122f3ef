// SPDX-License-Identifier: MIT
//
// CallLedger: the calls an asynchronous protocol has published and not yet
// seen answered, kept in a small append-only file so that a restarted orch
// knows which requests are already with a worker (and only waits for their
// replies). Lines are "+<id> <wall ms>" and "-<id>"; the file is rewritten
// compactly when opened and when it has grown well past its live entries.
// Writes reach the OS at once (they survive a process crash; no fsync).
//
// Without a path the ledger lives in memory only.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "orch/status.h"

namespace orch::internal {

class CallLedger {
 public:
  // Reads `path` (missing: empty) and drops entries older than `ttl_ms`.
  // FailedPrecondition when the file cannot be read or written.
  static Result<std::unique_ptr<CallLedger>> open(std::string path, int64_t now_ms, int64_t ttl_ms);
  ~CallLedger();
  CallLedger(const CallLedger&) = delete;
  CallLedger& operator=(const CallLedger&) = delete;

  bool contains(const std::string& id) const;
  void add(const std::string& id, int64_t now_ms);
  void remove(const std::string& id);
  size_t size() const;

 private:
  explicit CallLedger(std::string path) : path_(std::move(path)) {}
  Status rewrite_locked();
  void append_locked(const std::string& line);

  const std::string path_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int64_t> entries_;
  int fd_ = -1;
  size_t lines_ = 0;  // lines in the file
};

}  // namespace orch::internal
