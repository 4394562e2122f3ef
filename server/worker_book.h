// SPDX-License-Identifier: MIT
//
// WorkerBook: the server's view of its workers — config-seeded ones (source
// "config", reloaded from the config file at every start) and API-registered
// ones (source "registered", kept in the Store). It validates worker fields with
// NullBoiler's messages and keeps the registry that the engine dispatches to in
// step. Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "orch/store.h"
#include "orch/worker_registry.h"

namespace orch::server {

// The store collection (Store host records) that keeps workers registered
// through the API across restarts; each record has its worker's "id".
inline constexpr const char* kWorkersCollection = "workers";

class WorkerBook {
 public:
  WorkerBook(std::shared_ptr<WorkerRegistry> registry, std::shared_ptr<Store> store)
      : registry_(std::move(registry)), store_(std::move(store)) {}

  // Parses and checks a worker object (POST /workers or config `workers[]`).
  // InvalidArgument with NullBoiler's message on the first problem.
  // The id and token rules (SPEC §12) among them: an id as a path may name it
  // (id_rules.h), a token without control characters.
  static Result<WorkerInfo> parse(const Value& body);
  // Empty when `worker`'s id and token are acceptable, else why not.
  static std::string identity_problem(const WorkerInfo& worker);

  // Seeds config workers and reloads registered ones from the store.
  // InvalidArgument naming the worker when a config worker's id or token
  // breaks the rules (other problems skip that worker with a warning).
  Status load(const Value& config_workers, int64_t now_ms);
  // AlreadyExists when the id is taken.
  Status add(const WorkerInfo& worker, const std::string& source, int64_t now_ms);
  // NotFound when the id is unknown.
  Status remove(const std::string& id);
  // Brings the registered workers in line with the store, after another
  // instance sharing it registered, changed or removed one: new ones are
  // added, changed ones updated (calls in flight finish), gone ones removed.
  // Config workers are left as they are (one with the same id wins).
  Status sync_registered(int64_t now_ms);
  // Newest first, in GET /workers' shape.
  Value list_json() const;
  size_t size() const;

 private:
  struct Entry {
    WorkerInfo info;
    std::string source;
    int64_t created_at_ms = 0;
  };
  static Value record_of(const Entry& e);

  std::shared_ptr<WorkerRegistry> registry_;
  std::shared_ptr<Store> store_;
  mutable std::mutex mu_;
  std::vector<Entry> entries_;  // oldest first
};

}  // namespace orch::server
