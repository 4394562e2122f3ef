// SPDX-License-Identifier: MIT
//
// RateLimitShare: the workers' rate-limit reports of every orch serve sharing
// a database (PostgreSQL), so that GET /rate-limits on any instance shows what
// the workers told all of them. Each report a worker's reply carries here
// (WorkerRegistryOptions::on_rate_limit) is queued and a thread writes the
// newest one of each worker as a Store host record (collection "rate_limits",
// id = worker id): at most one round of writes a second, however many replies
// come, so a busy worker costs the database little. merged() combines this
// instance's reports with the stored ones; the newest report of a worker wins.
//
// Thread-safety: all members may be called from any thread. The destructor
// writes what is queued and joins the thread.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "orch/store.h"
#include "orch/worker_registry.h"

namespace orch::server {

inline constexpr const char* kRateLimitsCollection = "rate_limits";

class RateLimitShare {
 public:
  explicit RateLimitShare(std::shared_ptr<Store> store);
  ~RateLimitShare();
  RateLimitShare(const RateLimitShare&) = delete;
  RateLimitShare& operator=(const RateLimitShare&) = delete;

  // Queues a report for writing; never blocks on the store.
  void report(const WorkerRateLimit& limit);
  // `local` and the stored reports, one per worker (the newest).
  std::vector<WorkerRateLimit> merged(std::vector<WorkerRateLimit> local) const;

 private:
  void run();

  std::shared_ptr<Store> store_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, WorkerRateLimit> queued_;  // newest per worker
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace orch::server
