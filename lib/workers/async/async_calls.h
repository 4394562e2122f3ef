// SPDX-License-Identifier: MIT
//
// AsyncCalls: the calls of an asynchronous protocol that wait for a reply,
// keyed by correlation id (the WorkerRequest::call_id). Each waits until its
// reply is delivered or its deadline passes (then it fails with
// DeadlineExceeded and a message the protocol composes at that moment; the
// timer fires 5 ms early, so that message wins over the engine's own timeout
// for the same deadline).
//
// Replies that match no waiting call are kept as orphans for a while (a call
// dispatched again after a restart picks its reply up at once); replies to
// calls that already got theirs are duplicates (QoS 1 redelivery) and are
// dropped.
//
// Callbacks never run under the internal lock. Owned through a shared_ptr
// (deadline timers hold weak references).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "orch/clock.h"
#include "orch/dispatcher.h"

namespace orch::internal {

class AsyncCalls : public std::enable_shared_from_this<AsyncCalls> {
 public:
  using TimeoutMessage = std::function<std::string()>;
  enum class Delivery { kDelivered, kDuplicate, kOrphan };

  AsyncCalls(std::shared_ptr<Clock> clock, std::chrono::milliseconds orphan_ttl, size_t max_orphans = 10000);
  // Fails every waiting call with Cancelled.
  ~AsyncCalls();
  AsyncCalls(const AsyncCalls&) = delete;
  AsyncCalls& operator=(const AsyncCalls&) = delete;

  // Waits for `call_id`'s reply until `deadline`. When an orphan reply for it
  // is held, `done` gets it now and begin() returns false. A call already
  // waiting under the same id is superseded (fails with Cancelled).
  bool begin(const std::string& call_id, SteadyTime deadline, TimeoutMessage on_timeout,
             Dispatcher::Callback done);
  // A reply arrived for `call_id`.
  Delivery deliver(const std::string& call_id, WorkerReply reply);
  // Ends a waiting call with `reply` (e.g. the request could not be sent).
  // False when it was not waiting.
  bool fail(const std::string& call_id, WorkerReply reply);
  // Ends a waiting call with Cancelled. Returns whether it was waiting, and
  // whether its deadline had passed (a timeout rather than an abandon).
  struct Cancelled {
    bool was_waiting = false;
    bool past_deadline = false;
  };
  Cancelled cancel(const std::string& call_id);
  bool is_waiting(const std::string& call_id) const;
  size_t waiting() const;
  size_t orphans() const;
  // Drops the orphan reply of `call_id`, if one is held.
  void discard_orphan(const std::string& call_id);
  // Drops orphans older than the TTL; returns their ids.
  std::vector<std::string> expire_orphans();
  // Called with the id of every call that ends at its deadline.
  void set_on_timeout(std::function<void(const std::string& call_id)> fn);

 private:
  struct Call {
    Dispatcher::Callback done;
    SteadyTime deadline;
    Clock::TimerId timer = 0;
    TimeoutMessage on_timeout;
    uint64_t serial = 0;
  };
  struct Orphan {
    WorkerReply reply;
    SteadyTime at;
  };

  void expire(const std::string& call_id, uint64_t serial);
  void remember_answered_locked(const std::string& call_id);

  std::shared_ptr<Clock> clock_;
  const std::chrono::milliseconds orphan_ttl_;
  const size_t max_orphans_;
  mutable std::mutex mu_;
  uint64_t next_serial_ = 1;
  std::unordered_map<std::string, Call> calls_;
  std::unordered_map<std::string, Orphan> orphans_;
  std::deque<std::string> orphan_order_;
  std::unordered_set<std::string> answered_;  // recently answered, for duplicates
  std::deque<std::string> answered_order_;
  std::function<void(const std::string&)> on_timeout_;
};

}  // namespace orch::internal
