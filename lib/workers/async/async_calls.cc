// SPDX-License-Identifier: MIT
// AsyncCalls: waiting calls, orphan replies and duplicate detection.
#include "workers/async/async_calls.h"
#include "workers/worker_reply.h"

#include <optional>
#include <utility>

namespace orch::internal {
namespace {

constexpr size_t kMaxAnswered = 20000;
constexpr std::chrono::milliseconds kDeadlineLead{5};

}  // namespace

AsyncCalls::AsyncCalls(std::shared_ptr<Clock> clock, std::chrono::milliseconds orphan_ttl, size_t max_orphans)
    : clock_(std::move(clock)), orphan_ttl_(orphan_ttl), max_orphans_(max_orphans) {}

AsyncCalls::~AsyncCalls() {
  std::unordered_map<std::string, Call> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls.swap(calls_);
  }
  for (auto& [id, call] : calls) {
    if (call.timer) clock_->cancel(call.timer);
    call.done(failure(Status::cancelled("worker protocol shut down"), true));
  }
}

void AsyncCalls::set_on_timeout(std::function<void(const std::string&)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  on_timeout_ = std::move(fn);
}

bool AsyncCalls::begin(const std::string& call_id, SteadyTime deadline, TimeoutMessage on_timeout,
                       Dispatcher::Callback done) {
  Dispatcher::Callback superseded;
  Clock::TimerId old_timer = 0;
  uint64_t serial = 0;
  std::optional<WorkerReply> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto orphan = orphans_.find(call_id);
    if (orphan != orphans_.end()) {
      held = std::move(orphan->second.reply);
      orphans_.erase(orphan);
      remember_answered_locked(call_id);
    }
  }
  if (held) {
    done(std::move(*held));
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    answered_.erase(call_id);  // asked again: a later reply is an answer, not a duplicate
    auto existing = calls_.find(call_id);
    if (existing != calls_.end()) {
      superseded = std::move(existing->second.done);
      old_timer = existing->second.timer;
      calls_.erase(existing);
    }
    serial = next_serial_++;
    Call& call = calls_[call_id];
    call.done = std::move(done);
    call.deadline = deadline;
    call.on_timeout = std::move(on_timeout);
    call.serial = serial;
  }
  if (old_timer) clock_->cancel(old_timer);
  if (superseded) superseded(failure(Status::cancelled("call " + call_id + " was dispatched again"), true));
  // End a little before the deadline: the caller's own timer for the same
  // deadline then finds the call over with our message, which says what was
  // waited for and whether the broker was reachable.
  SteadyTime fire_at = deadline;
  if (deadline - clock_->steady_now() > 20 * kDeadlineLead) fire_at -= kDeadlineLead;
  std::weak_ptr<AsyncCalls> weak = weak_from_this();
  Clock::TimerId timer = clock_->call_at(fire_at, [weak, call_id, serial] {
    if (auto self = weak.lock()) self->expire(call_id, serial);
  });
  std::lock_guard<std::mutex> lock(mu_);
  auto it = calls_.find(call_id);
  if (it != calls_.end() && it->second.serial == serial) {
    it->second.timer = timer;
  } else {
    clock_->cancel(timer);  // answered meanwhile
  }
  return true;
}

void AsyncCalls::expire(const std::string& call_id, uint64_t serial) {
  Call call;
  std::function<void(const std::string&)> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(call_id);
    if (it == calls_.end() || it->second.serial != serial) return;
    call = std::move(it->second);
    calls_.erase(it);
    notify = on_timeout_;
  }
  std::string message = call.on_timeout ? call.on_timeout() : "no reply before the deadline";
  if (notify) notify(call_id);
  call.done(failure(Status::deadline_exceeded(std::move(message)), true));
}

AsyncCalls::Delivery AsyncCalls::deliver(const std::string& call_id, WorkerReply reply) {
  Call call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(call_id);
    if (it == calls_.end()) {
      if (answered_.count(call_id)) return Delivery::kDuplicate;
      // A redelivered orphan keeps its first arrival time (so it still expires).
      auto [slot, inserted] = orphans_.try_emplace(call_id, Orphan{std::move(reply), clock_->steady_now()});
      (void)slot;
      if (inserted) orphan_order_.push_back(call_id);
      // (discard_orphan() leaves ids behind in the order: bound it too)
      while ((orphans_.size() > max_orphans_ || orphan_order_.size() > 2 * max_orphans_) &&
             !orphan_order_.empty()) {
        orphans_.erase(orphan_order_.front());
        orphan_order_.pop_front();
      }
      return Delivery::kOrphan;
    }
    call = std::move(it->second);
    calls_.erase(it);
    remember_answered_locked(call_id);
  }
  if (call.timer) clock_->cancel(call.timer);
  call.done(std::move(reply));
  return Delivery::kDelivered;
}

bool AsyncCalls::fail(const std::string& call_id, WorkerReply reply) {
  Call call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(call_id);
    if (it == calls_.end()) return false;
    call = std::move(it->second);
    calls_.erase(it);
  }
  if (call.timer) clock_->cancel(call.timer);
  call.done(std::move(reply));
  return true;
}

AsyncCalls::Cancelled AsyncCalls::cancel(const std::string& call_id) {
  Call call;
  Cancelled out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(call_id);
    if (it == calls_.end()) return out;
    call = std::move(it->second);
    calls_.erase(it);
  }
  out.was_waiting = true;
  out.past_deadline = clock_->steady_now() >= call.deadline;
  if (call.timer) clock_->cancel(call.timer);
  call.done(failure(Status::cancelled("call cancelled"), true));
  return out;
}

bool AsyncCalls::is_waiting(const std::string& call_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_.count(call_id) != 0;
}

size_t AsyncCalls::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_.size();
}

size_t AsyncCalls::orphans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return orphans_.size();
}

void AsyncCalls::discard_orphan(const std::string& call_id) {
  std::lock_guard<std::mutex> lock(mu_);
  orphans_.erase(call_id);  // (its orphan_order_ entry goes when it reaches the front)
}

std::vector<std::string> AsyncCalls::expire_orphans() {
  std::vector<std::string> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  const SteadyTime now = clock_->steady_now();
  while (!orphan_order_.empty()) {
    auto it = orphans_.find(orphan_order_.front());
    if (it != orphans_.end() && now - it->second.at < orphan_ttl_) break;
    if (it != orphans_.end()) {
      dropped.push_back(it->first);
      orphans_.erase(it);
    }
    orphan_order_.pop_front();
  }
  return dropped;
}

void AsyncCalls::remember_answered_locked(const std::string& call_id) {
  if (answered_.insert(call_id).second) answered_order_.push_back(call_id);
  while (answered_order_.size() > kMaxAnswered) {
    answered_.erase(answered_order_.front());
    answered_order_.pop_front();
  }
}

}  // namespace orch::internal
