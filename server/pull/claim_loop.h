// SPDX-License-Identifier: MIT
//
// ClaimLoop: pull mode's two long-lived threads.
//
//   poll thread      every poll_interval_ms (or at once on TaskBoard's
//                    refresh_requested): reconcile running tasks with
//                    NullTickets, then (when it has room and its turn:
//                    Deps::may_claim) claim tasks per pipeline workflow and
//                    role within the limits; joins finished task threads
//   liveness thread  heartbeats each lease on its own timer and detects
//                    stalled tasks (no activity for stall_timeout_ms)
//
// A claim that cannot run here is released at once; an admitted one goes on
// the board and to `launch`, which starts its task thread.
//
// Who owns what: Tracker::Impl owns the loop and everything its Deps refer
// to, and calls join() before any of it goes.
//
// Thread-safety: start_locked() with TaskBoard::mu held; join() once, from
// the thread that stops the tracker (after setting board.stopping).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pull/tracked_task.h"
#include "pull/tracker_client.h"
#include "pull/tracker_config.h"

namespace orch::server {

class ClaimLoop {
 public:
  // Starts a task's thread; called with TaskBoard::mu held.
  using Launch = std::function<void(const std::shared_ptr<TrackedTask>&)>;
  struct Deps {
    TaskBoard& board;
    const TrackerConfig& cfg;
    const std::vector<std::shared_ptr<const PipelineDef>>& defs;
    TrackerClient& client;
    const std::atomic<bool>& draining;  // the server's: no claims while draining
    const std::atomic<bool>& stopping;  // the server's: no claims while shutting down
    Launch launch;
    // Asked once per poll, after reconcile and only when there is room for
    // a task: false means another instance claims this round (see
    // TrackerHost::claim_turn). Running tasks, their heartbeats and
    // reconciliation go on here either way.
    std::function<bool()> may_claim;
  };

  explicit ClaimLoop(Deps deps);
  ClaimLoop(const ClaimLoop&) = delete;
  ClaimLoop& operator=(const ClaimLoop&) = delete;

  void start_locked();
  void join();

 private:
  void poll_loop();
  void liveness_loop();
  // Runs `loop` (a thread's whole life) until it returns; an exception it
  // throws restarts it after a pause instead of ending the server.
  void keep_running(const char* where, void (ClaimLoop::*loop)());
  void join_finished(std::unique_lock<std::mutex>& lock);

  void claim_all();
  // Room for one more task at all (the global limit), and not stopping.
  bool has_room() const;
  bool can_claim_locked(const std::string& pipeline, const std::string& role) const;
  void admit(const std::shared_ptr<const PipelineDef>& def, const std::string& role, Claim claim);
  void release(const Claim& claim, const std::string& reason);
  void heartbeat(const std::shared_ptr<TrackedTask>& t);
  void reconcile();
  std::shared_ptr<const PipelineDef> find_def(const std::string& pipeline) const;
  // Running tasks matching `pred`.
  template <typename Pred>
  int64_t count_locked(Pred pred) const;

  Deps d_;
  Value per_state_json_ = Value::object();  // the claim's concurrency.per_state
  std::thread poll_thread_;
  std::thread live_thread_;
};

}  // namespace orch::server
