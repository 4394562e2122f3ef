// SPDX-License-Identifier: MIT
#include "worker_book.h"

#include "log/log.h"

#include <algorithm>
#include <iostream>
#include <map>

#include "id_rules.h"
#include "orch/url.h"

namespace orch::server {

namespace {

// The URL scheme each built-in protocol speaks.
bool scheme_fits(const std::string& protocol, const std::string& scheme) {
  if (protocol == "mqtt") return scheme == "mqtt";
  if (protocol == "redis_stream") return scheme == "redis";
  return scheme == "http" || scheme == "https";
}

}  // namespace

Result<WorkerInfo> WorkerBook::parse(const Value& body) {
  WorkerInfo w;
  if (!body["id"].is_string() || body["id"].as_string().empty()) {
    return Status::invalid_argument("missing required field: id");
  }
  if (!body["url"].is_string() || body["url"].as_string().empty()) {
    return Status::invalid_argument("missing required field: url");
  }
  w.id = body["id"].as_string();
  w.url = body["url"].as_string();
  w.token = body["token"].get_string("");
  if (std::string problem = identity_problem(w); !problem.empty()) return Status::invalid_argument(problem);
  w.protocol = body["protocol"].get_string("webhook");
  static const char* kProtocols[] = {"webhook", "api_chat", "openai_chat", "mqtt", "redis_stream", "a2a"};
  if (std::find(std::begin(kProtocols), std::end(kProtocols), w.protocol) == std::end(kProtocols)) {
    return Status::invalid_argument("invalid protocol (expected webhook|api_chat|openai_chat|mqtt|redis_stream|a2a)");
  }
  // Parsed once here, so no malformed URL reaches a connection (the registry
  // then checks the host against the network policy).
  Result<Url> url = parse_url(w.url);
  if (!url.ok()) return Status::invalid_argument("invalid worker url: " + url.status().message());
  if (!scheme_fits(w.protocol, url->scheme)) {
    return Status::invalid_argument("invalid worker url: protocol " + w.protocol + " does not speak " + url->scheme +
                                    "://");
  }
  if (w.protocol == "webhook" && url->target.substr(0, url->target.find('?')).size() < 2) {
    return Status::invalid_argument("webhook protocol requires explicit URL path (for example /webhook)");
  }
  w.model = body["model"].get_string("");
  if (w.protocol == "openai_chat" && w.model.empty()) {
    return Status::invalid_argument("openai_chat protocol requires model");
  }
  const Value& tags = body["tags"];
  if (!tags.is_null()) {
    if (!tags.is_array()) return Status::invalid_argument("tags must be an array of strings");
    for (const Value& t : tags.as_array()) {
      if (!t.is_string()) return Status::invalid_argument("tags must be an array of strings");
      w.tags.push_back(t.as_string());
    }
  }
  const Value& mc = body["max_concurrent"];
  if (!mc.is_null()) {
    if (!mc.is_int()) return Status::invalid_argument("max_concurrent must be a positive integer");
    if (mc.as_int() < 1) return Status::invalid_argument("max_concurrent must be >= 1");
    w.max_concurrent = static_cast<int>(std::min<int64_t>(mc.as_int(), 1 << 20));
  }
  return w;
}

std::string WorkerBook::identity_problem(const WorkerInfo& w) {
  // The id must be one DELETE /workers/{id} can name; the token goes into
  // every call's Authorization header, where CR or LF would end the header
  // (and every dispatch would fail).
  if (std::string problem = id_problem(w.id, "worker id"); !problem.empty()) return problem;
  return control_character_problem(w.token, "worker token");
}

Value WorkerBook::record_of(const Entry& e) {
  Value tags = Value::array();
  for (const std::string& t : e.info.tags) tags.push_back(t);
  return Value::object({{"id", e.info.id},
                        {"url", e.info.url},
                        {"protocol", e.info.protocol},
                        {"token", e.info.token},
                        {"model", e.info.model.empty() ? Value() : Value(e.info.model)},
                        {"tags", tags},
                        {"max_concurrent", e.info.max_concurrent},
                        {"created_at_ms", static_cast<long long>(e.created_at_ms)}});
}

Status WorkerBook::load(const Value& config_workers, int64_t now_ms) {
  if (config_workers.is_array()) {
    size_t index = 0;
    for (const Value& c : config_workers.as_array()) {
      const std::string where = "config workers[" + std::to_string(index++) + "]";
      // An id or token that could never work stops start-up (other problems
      // skip the worker, as NullBoiler does): such a worker could not be
      // dispatched to nor removed.
      if (c["id"].is_string()) {
        WorkerInfo identity;
        identity.id = c["id"].as_string();
        identity.token = c["token"].get_string("");
        if (std::string problem = identity_problem(identity); !problem.empty()) {
          return Status::invalid_argument(where + " (id " + Value(identity.id.substr(0, 64)).to_json() + "): " + problem);
        }
      }
      auto w = parse(c);
      if (!w.ok()) {
        // NullBoiler skips a bad config worker with a warning.
        log(LogLevel::kWarn, "config.worker_skipped", {{"worker_id", c["id"]}, {"error", w.status().message()}});
        continue;
      }
      Status s = add(*w, "config", now_ms);
      if (!s.ok()) log(LogLevel::kWarn, "config.worker_skipped", {{"worker_id", w->id}, {"error", s.message()}});
    }
  }
  auto stored = store_->list_host_records(kWorkersCollection);
  if (!stored.ok()) return stored.status().code() == StatusCode::kUnimplemented ? Status() : stored.status();
  for (const Value& record : *stored) {
    auto w = parse(record);
    if (!w.ok()) continue;
    std::lock_guard<std::mutex> lock(mu_);
    bool taken = std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.info.id == w->id; });
    if (taken) continue;  // a config worker with the same id wins
    if (registry_->add_worker(*w).ok()) {
      entries_.push_back(Entry{*w, "registered", record["created_at_ms"].get_int(now_ms)});
    }
  }
  return Status();
}

Status WorkerBook::add(const WorkerInfo& worker, const std::string& source, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : entries_) {
    if (e.info.id == worker.id) return Status::already_exists("worker id already exists");
  }
  ORCH_RETURN_IF_ERROR(registry_->add_worker(worker));
  Entry entry{worker, source, now_ms};
  if (source == "registered") {
    Status s = store_->put_host_record(kWorkersCollection, worker.id, record_of(entry));
    if (!s.ok() && s.code() != StatusCode::kUnimplemented) {
      (void)registry_->remove_worker(worker.id);
      return s;
    }
  }
  entries_.push_back(std::move(entry));
  return Status();
}

Status WorkerBook::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.info.id == id; });
  if (it == entries_.end()) return Status::not_found("worker not found");
  (void)registry_->remove_worker(id);
  (void)store_->delete_host_record(kWorkersCollection, id);
  entries_.erase(it);
  return Status();
}

Status WorkerBook::sync_registered(int64_t now_ms) {
  auto stored = store_->list_host_records(kWorkersCollection);
  if (!stored.ok()) return stored.status().code() == StatusCode::kUnimplemented ? Status() : stored.status();
  std::map<std::string, Entry> wanted;
  for (const Value& record : *stored) {
    auto w = parse(record);
    if (w.ok()) wanted.emplace(w->id, Entry{*w, "registered", record["created_at_ms"].get_int(now_ms)});
  }
  // Two records describe one worker alike when all but their time match.
  auto same = [](const Entry& a, const Entry& b) {
    Value x = record_of(a), y = record_of(b);
    x.set("created_at_ms", 0);
    y.set("created_at_ms", 0);
    return x == y;
  };
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->source != "registered") {
      wanted.erase(it->info.id);  // a config worker of that id wins
      ++it;
      continue;
    }
    auto found = wanted.find(it->info.id);
    if (found == wanted.end()) {
      (void)registry_->remove_worker(it->info.id);
      it = entries_.erase(it);
      continue;
    }
    if (!same(*it, found->second) && registry_->update_worker(found->second.info).ok()) it->info = found->second.info;
    wanted.erase(found);
    ++it;
  }
  for (auto& [id, entry] : wanted) {
    if (registry_->add_worker(entry.info).ok()) entries_.push_back(std::move(entry));
  }
  return Status();
}

Value WorkerBook::list_json() const {
  std::lock_guard<std::mutex> lock(mu_);
  Value out = Value::array();
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    auto status = registry_->get_worker(it->info.id);
    Value tags = Value::array();
    for (const std::string& t : it->info.tags) tags.push_back(t);
    Value o = Value::object({{"id", it->info.id},
                             {"url", it->info.url},
                             {"protocol", it->info.protocol},
                             {"model", it->info.model.empty() ? Value() : Value(it->info.model)},
                             {"tags", tags},
                             {"max_concurrent", it->info.max_concurrent},
                             {"source", it->source}});
    if (status.ok()) {
      bool open = status->circuit == CircuitState::kOpen;
      o.set("status", open ? "dead" : "active");
      o.set("circuit", std::string(circuit_state_name(status->circuit)));
      o.set("consecutive_failures", status->consecutive_failures);
      o.set("in_flight", status->in_flight);
      if (status->circuit_open_until_ms) o.set("circuit_open_until_ms", static_cast<long long>(status->circuit_open_until_ms));
      if (!status->last_error.empty()) o.set("last_error_text", status->last_error);
    } else {
      o.set("status", "active");
      o.set("consecutive_failures", 0);
    }
    o.set("created_at_ms", static_cast<long long>(it->created_at_ms));
    out.push_back(std::move(o));
  }
  return out;
}

size_t WorkerBook::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace orch::server
