// SPDX-License-Identifier: MIT
#include "run_commands.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "log/log.h"
#include "orch/id.h"

namespace orch::server {
namespace {

// How often a waiting caller tries the call itself (its holder may have died:
// once the lease runs out the claim succeeds here).
constexpr std::chrono::milliseconds kLocalRetry{1000};
// How often the relay looks at the collection without being told (lost
// notifications while the store reconnects).
constexpr std::chrono::milliseconds kFallbackScan{5000};
// Forwarded calls waiting here at once; beyond, Unavailable at once.
constexpr size_t kMaxWaiting = 256;
// A caller waits at most this long, however long the lease TTL: an HTTP
// client should not hang for hours on a holder that may never answer.
constexpr int64_t kMaxWaitMs = 120 * 1000;
// A record nobody collected (its caller died) is dropped after this.
constexpr int64_t kOrphanMs = 10 * 60 * 1000;

StatusCode code_named(const std::string& name) {
  for (StatusCode code : {StatusCode::kOk, StatusCode::kInvalidArgument, StatusCode::kNotFound,
                          StatusCode::kAlreadyExists, StatusCode::kFailedPrecondition, StatusCode::kAborted,
                          StatusCode::kUnavailable, StatusCode::kDeadlineExceeded, StatusCode::kCancelled,
                          StatusCode::kResourceExhausted, StatusCode::kUnimplemented, StatusCode::kInternal}) {
    if (status_code_name(code) == name) return code;
  }
  return StatusCode::kInternal;
}

Value record_of(const std::string& id, const RunCommand& command, int64_t now_ms) {
  return Value::object({{"id", id},
                        {"op", command.op},
                        {"run_id", command.run_id},
                        {"args", command.args},
                        {"issued_at_ms", static_cast<long long>(now_ms)}});
}

Value outcome_of(const Status& status) {
  return Value::object({{"code", std::string(status_code_name(status.code()))}, {"message", status.message()}});
}

Status status_of(const Value& outcome) {
  const StatusCode code = code_named(outcome["code"].get_string("internal"));
  if (code == StatusCode::kOk) return Status();
  return Status(code, outcome["message"].get_string("the instance holding the run gave no reason"));
}

}  // namespace

Status apply_run_command(Engine& engine, const RunCommand& command) {
  const Value& args = command.args;
  const std::string& id = command.run_id;
  if (command.op == "cancel") return engine.cancel_run(id);
  if (command.op == "retry") return engine.retry_run(id);
  if (command.op == "delete") return engine.delete_run(id);
  if (command.op == "resume") {
    const Value& updates = args["state_updates"];
    if (!updates.is_null() && !updates.is_object()) return Status::invalid_argument("state_updates must be an object");
    return engine.resume_run(id, updates);
  }
  if (command.op == "inject") {
    const Value& updates = args["updates"];
    const Value& after = args["apply_after_step"];
    if (!updates.is_object()) return Status::invalid_argument("updates must be an object");
    if (!after.is_null() && !after.is_string()) return Status::invalid_argument("apply_after_step must be a string");
    return engine.inject_state(id, updates, after.get_string(""));
  }
  if (command.op == "replay") {
    const Value& checkpoint = args["checkpoint_id"];
    if (!checkpoint.is_string()) return Status::invalid_argument("checkpoint_id must be a string");
    return engine.replay_run(id, checkpoint.as_string());
  }
  return Status::invalid_argument("unknown run command '" + command.op + "'");
}

RunCommandRelay::RunCommandRelay(std::shared_ptr<Store> store, Engine& engine, std::shared_ptr<Clock> clock,
                                 bool shared, int64_t wait_ms)
    : store_(std::move(store)),
      engine_(engine),
      clock_(std::move(clock)),
      shared_(shared),
      wait_ms_(std::clamp<int64_t>(wait_ms, 1000, kMaxWaitMs)) {
  if (shared_) thread_ = std::thread([this] { loop(); });
}

RunCommandRelay::~RunCommandRelay() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  answer_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t RunCommandRelay::applied_for_others() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_for_others_;
}

void RunCommandRelay::on_change() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed_ = true;
  }
  wake_.notify_one();
}

Status RunCommandRelay::run(const RunCommand& command) {
  Status local = apply_run_command(engine_, command);
  // Aborted: another engine holds the run (its lease is live).
  if (!shared_ || local.code() != StatusCode::kAborted) return local;
  return forward(command);
}

Status RunCommandRelay::forward(const RunCommand& command) {
  const std::string id = new_uuid();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::unavailable("the server is shutting down");
    if (waiters_.size() >= kMaxWaiting) {
      return Status::unavailable("too many calls are waiting for the instances holding their runs");
    }
    waiters_.emplace(id, Waiter());
  }
  auto forget = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.erase(id);
  };
  Status put = store_->put_host_record(kRunCommandsCollection, id, record_of(id, command, clock_->now_ms()));
  if (!put.ok()) {
    forget();
    return Status(put.code(), "handing the call to the instance holding run " + command.run_id + ": " + put.message());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms_);
  Status outcome = Status::unavailable("run " + command.run_id +
                                       " is held by another instance, which did not answer within " +
                                       std::to_string(wait_ms_) + " ms");
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const Waiter& waiter = waiters_.at(id);  // a map entry stays put; only this call erases it
      const auto until = std::min(deadline, std::chrono::steady_clock::now() + kLocalRetry);
      answer_.wait_until(lock, until, [&] { return stopping_ || waiter.answered; });
      if (waiter.answered) {
        outcome = waiter.outcome;
        break;
      }
      if (stopping_) {
        outcome = Status::unavailable("the server is shutting down");
        break;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    // The holder may have answered while its notification is on the way: a
    // call it applied must not be tried again here (a cancelled run would
    // answer "already cancelled").
    if (stored_outcome(id, &outcome)) break;
    // The holder may be gone: once its lease has run out the call works here
    // (the claim fences the old holder: it cannot apply the record after).
    Status again = apply_run_command(engine_, command);
    if (again.code() != StatusCode::kAborted) {
      outcome = again;
      break;
    }
  }
  forget();
  (void)store_->delete_host_record(kRunCommandsCollection, id);
  return outcome;
}

bool RunCommandRelay::stored_outcome(const std::string& id, Status* outcome) {
  auto records = store_->list_host_records(kRunCommandsCollection);
  if (!records.ok()) return false;
  for (const Value& record : *records) {
    if (record["id"].get_string("") != id || !record["outcome"].is_object()) continue;
    *outcome = status_of(record["outcome"]);
    return true;
  }
  return false;
}

void RunCommandRelay::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, kFallbackScan, [&] { return stopping_ || changed_; });
    if (stopping_) break;
    changed_ = false;
    lock.unlock();
    scan();
    lock.lock();
  }
}

void RunCommandRelay::scan() {
  auto records = store_->list_host_records(kRunCommandsCollection);
  if (!records.ok()) {
    log(LogLevel::kWarn, "run_commands.list_failed", {{"error", records.status().message()}});
    return;
  }
  const int64_t now = clock_->now_ms();
  std::set<std::string> present;
  for (const Value& record : *records) {
    const std::string id = record["id"].get_string("");
    if (id.empty()) continue;
    present.insert(id);
    // No caller waits this long (wait_ms is capped well below): its caller
    // is gone, answered or not. A record without its time is none of ours.
    if (!record["issued_at_ms"].is_int() || now - record["issued_at_ms"].as_int() > kOrphanMs) {
      (void)store_->delete_host_record(kRunCommandsCollection, id);
      continue;
    }
    const Value& outcome = record["outcome"];
    if (outcome.is_object()) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = waiters_.find(id);
      if (it != waiters_.end() && !it->second.answered) {
        it->second.answered = true;
        it->second.outcome = status_of(outcome);
        answer_.notify_all();
      }
      continue;
    }
    RunCommand command;
    command.op = record["op"].get_string("");
    command.run_id = record["run_id"].get_string("");
    command.args = record["args"];
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiters_.count(id) || applied_.count(id)) continue;  // our own call, or done here
    }
    if (command.run_id.empty() || !engine_.holds_run(command.run_id)) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      applied_.insert(id);
    }
    Status result = apply_run_command(engine_, command);
    // Aborted: the run was taken from this instance meanwhile; its new holder answers.
    if (result.code() == StatusCode::kAborted) continue;
    Value answered = record;
    answered.set("outcome", outcome_of(result));
    Status put = store_->put_host_record(kRunCommandsCollection, id, answered);
    if (!put.ok()) log(LogLevel::kWarn, "run_commands.answer_failed", {{"error", put.message()}});
    std::lock_guard<std::mutex> lock(mu_);
    ++applied_for_others_;
  }
  // Records collected by their callers need no memory here any more.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = applied_.begin(); it != applied_.end();) {
    it = present.count(*it) ? std::next(it) : applied_.erase(it);
  }
}

}  // namespace orch::server
