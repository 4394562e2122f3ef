// SPDX-License-Identifier: MIT
//
// The latest checkpoint document of recently committed runs, kept by the
// database stores (SQLite, PostgreSQL) so that the next commit of a run can
// diff against it instead of reading its chain back, and reads of the
// latest checkpoint can skip rebuilding it. An entry is only used when its
// link still matches the run's latest row in the database.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "orch/value.h"
#include "store/checkpoint_codec.h"

namespace orch::checkpoint_codec {

struct CachedDocument {
  ChainLink link;
  Value document;
};

class DocumentCache {
 public:
  // At most `capacity` runs (0: nothing is kept).
  explicit DocumentCache(size_t capacity) : capacity_(capacity) {}

  // The run's entry (sharing storage with it: cheap), if any.
  bool get(const std::string& run_id, CachedDocument* out);
  void put(const std::string& run_id, CachedDocument entry);
  void forget(const std::string& run_id);
  void clear();
  size_t size();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::unordered_map<std::string, CachedDocument> entries_;
};

}  // namespace orch::checkpoint_codec
