// SPDX-License-Identifier: MIT
//
// RetentionSweeper: deletes finished runs (completed, failed, cancelled) once
// they are older than `engine.retention_ms`, with everything they own. It wakes
// on a timer (a quarter of the retention, at least every hour), never spins.
// Instances sharing a database sweep once between them: only the holder of
// the store's "retention" singleton lease (Store::claim_singleton) sweeps.
// Thread-safe; stops in its destructor.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace orch::server {

struct App;

class RetentionSweeper {
 public:
  RetentionSweeper(App& app, int64_t retention_ms);
  ~RetentionSweeper();

  // Deletes what is due now; returns how many runs it removed.
  size_t sweep();

 private:
  void loop();
  // How often it wakes: a quarter of the retention, between 10 ms and an hour.
  int64_t interval_ms() const;

  App& app_;
  int64_t retention_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace orch::server
