// SPDX-License-Identifier: MIT
#include "rate_limit_share.h"

#include <chrono>

#include "log/log.h"

namespace orch::server {
namespace {

// Reports a worker may send are written this often at most.
constexpr auto kWritePause = std::chrono::seconds(1);

Value record_of(const WorkerRateLimit& r) {
  return Value::object({{"worker_id", r.worker_id},
                        {"remaining", static_cast<long long>(r.remaining)},
                        {"limit", static_cast<long long>(r.limit)},
                        {"reset_ms", static_cast<long long>(r.reset_ms)},
                        {"updated_at_ms", static_cast<long long>(r.updated_at_ms)}});
}

// A stored record as this instance wrote it; nullopt for anything else.
std::optional<WorkerRateLimit> limit_of(const Value& v) {
  if (!v["worker_id"].is_string() || v["worker_id"].as_string().empty()) return std::nullopt;
  for (const char* key : {"remaining", "limit", "reset_ms", "updated_at_ms"}) {
    if (!v[key].is_int()) return std::nullopt;
  }
  WorkerRateLimit r;
  r.worker_id = v["worker_id"].as_string();
  r.remaining = v["remaining"].as_int();
  r.limit = v["limit"].as_int();
  r.reset_ms = v["reset_ms"].as_int();
  r.updated_at_ms = v["updated_at_ms"].as_int();
  return r;
}

}  // namespace

RateLimitShare::RateLimitShare(std::shared_ptr<Store> store) : store_(std::move(store)) {
  thread_ = std::thread([this] { run(); });
}

RateLimitShare::~RateLimitShare() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void RateLimitShare::report(const WorkerRateLimit& limit) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_[limit.worker_id] = limit;
  }
  wake_.notify_one();
}

void RateLimitShare::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queued_.empty(); });
    std::map<std::string, WorkerRateLimit> writing;
    writing.swap(queued_);
    const bool last = stopping_;
    lock.unlock();
    for (const auto& [id, limit] : writing) {
      Status s = store_->put_host_record(kRateLimitsCollection, id, record_of(limit));
      if (!s.ok()) log(LogLevel::kWarn, "rate_limits.share_failed", {{"worker_id", id}, {"error", s.message()}});
    }
    lock.lock();
    if (last) return;
    // Reports of the next second gather meanwhile (only the newest of each
    // worker is kept); a stop ends the pause at once.
    wake_.wait_for(lock, kWritePause, [this] { return stopping_; });
  }
}

std::vector<WorkerRateLimit> RateLimitShare::merged(std::vector<WorkerRateLimit> local) const {
  std::map<std::string, WorkerRateLimit> newest;
  for (WorkerRateLimit& r : local) newest[r.worker_id] = std::move(r);
  auto stored = store_->list_host_records(kRateLimitsCollection);
  if (stored.ok()) {
    for (const Value& v : *stored) {
      std::optional<WorkerRateLimit> r = limit_of(v);
      if (!r) continue;
      auto it = newest.find(r->worker_id);
      if (it == newest.end() || it->second.updated_at_ms < r->updated_at_ms) newest[r->worker_id] = *r;
    }
  }
  std::vector<WorkerRateLimit> out;
  out.reserve(newest.size());
  for (auto& [id, r] : newest) out.push_back(std::move(r));
  return out;
}

}  // namespace orch::server
