// SPDX-License-Identifier: MIT
//
// LeaseKeeper: what keeps several `orch serve` instances on one database
// honest about their runs (issue #21). One thread, waking every
// engine.lease_ttl_ms / 3:
//  - renews every lease this instance holds (Store::renew_leases, one
//    statement), so its runs stay its own while it is alive;
//  - takes over runs whose lease ran out (Engine::take_over_expired_runs):
//    an instance that died (or stopped renewing: paused, cut off) leaves its
//    runs to the others within the TTL plus one period. The old owner's
//    writes are fenced from the takeover on.
// A store that cannot renew or list expired leases (Unimplemented) turns the
// matching half off. Thread-safe; stops in its destructor (before the engine
// goes).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "orch/engine.h"
#include "orch/store.h"

namespace orch::server {

class LeaseKeeper {
 public:
  LeaseKeeper(Store& store, Engine& engine, std::string owner_id, int64_t lease_ttl_ms);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // One round now (renew, then take over); returns the runs taken over.
  size_t tick();

 private:
  void loop();

  Store& store_;
  Engine& engine_;
  const std::string owner_id_;
  const int64_t lease_ttl_ms_;
  bool renewing_ = true;   // false once the store said Unimplemented
  bool taking_over_ = true;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// A new owner id for this process: orch-serve:<host>:<pid>:<random>. Unique
// per process, so instances on one host (or one restarted) never share one;
// two engines with one id would not fence each other.
std::string new_instance_owner_id();

}  // namespace orch::server
