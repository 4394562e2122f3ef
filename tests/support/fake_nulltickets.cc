// SPDX-License-Identifier: MIT
#include "support/fake_nulltickets.h"

#include <httplib.h>

#include <algorithm>

namespace orch::testing {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string bearer_of(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  return auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : "";
}

void reply(httplib::Response& res, int status, const Value& body) {
  res.status = status;
  res.set_content(body.to_json(), "application/json");
}

void error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  reply(res, status, Value::object({{"error", Value::object({{"code", code}, {"message", message}})}}));
}

}  // namespace

struct FakeNullTickets::State {
  struct Pipeline {
    std::map<std::string, std::string> roles;
    std::vector<std::vector<std::string>> transitions;
  };
  struct Lease {
    std::string id;
    std::string token;
    std::string run_id;
    std::string task_id;
    int64_t ttl_ms = 0;
    int64_t expires_at_ms = 0;
  };

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::map<std::string, Pipeline> pipelines;
  std::vector<std::string> order;           // task ids, in claim order
  std::map<std::string, Value> tasks;
  std::map<std::string, Value> runs;        // run id -> run object
  std::map<std::string, std::string> latest_run;  // task id -> run id
  std::map<std::string, Lease> leases;      // lease id -> lease
  std::vector<TrackerCall> calls;
  int heartbeat_status = 0;
  int task_read_status = 0;
  bool honour_per_state = true;
  bool hold_reads_until_refused_heartbeat = false;
  bool heartbeat_refused = false;
  std::string api_token;
  int next_id = 1;
  int max_leases = 0;
  std::map<std::string, int> max_by_role;
  std::map<std::string, int> max_by_pipeline;

  bool active(const Lease& l) const { return l.expires_at_ms > now_ms(); }
  static std::string field(const std::map<std::string, Value>& m, const std::string& id, const char* key) {
    auto it = m.find(id);
    return it == m.end() ? "" : it->second[key].get_string("");
  }
  const Lease* lease_of_task(const std::string& task_id) const {
    for (const auto& [id, l] : leases) {
      if (l.task_id == task_id && active(l)) return &l;
    }
    return nullptr;
  }
  Value transitions_of(const Value& task) const {
    Value out = Value::array();
    auto p = pipelines.find(task["pipeline_id"].get_string(""));
    if (p == pipelines.end()) return out;
    for (const auto& t : p->second.transitions) {
      if (t[0] == task["stage"].get_string("")) {
        out.push_back(Value::object({{"trigger", t[2]}, {"to", t[1]}, {"required_gates", Value::array()}}));
      }
    }
    return out;
  }
  std::string role_of(const Value& task) const {
    auto p = pipelines.find(task["pipeline_id"].get_string(""));
    if (p == pipelines.end()) return "";
    auto r = p->second.roles.find(task["stage"].get_string(""));
    return r == p->second.roles.end() ? "" : r->second;
  }
  void note_leases() {
    int total = 0;
    std::map<std::string, int> by_role;
    std::map<std::string, int> by_pipeline;
    for (const auto& [id, l] : leases) {
      if (!active(l)) continue;
      ++total;
      ++by_role[field(runs, l.run_id, "agent_role")];
      ++by_pipeline[field(tasks, l.task_id, "pipeline_id")];
    }
    max_leases = std::max(max_leases, total);
    for (const auto& [k, v] : by_role) max_by_role[k] = std::max(max_by_role[k], v);
    for (const auto& [k, v] : by_pipeline) max_by_pipeline[k] = std::max(max_by_pipeline[k], v);
  }
  // NullTickets' check for lease-protected run endpoints.
  bool check_run_lease(const std::string& run_id, const std::string& token, httplib::Response& res, Lease** out) {
    for (auto& [id, l] : leases) {
      if (l.run_id != run_id) continue;
      if (l.token != token) {
        error(res, 401, "unauthorized", "Invalid token");
        return false;
      }
      if (!active(l)) {
        error(res, 410, "expired", "Lease expired");
        return false;
      }
      *out = &l;
      return true;
    }
    error(res, 404, "not_found", "No active lease for this run");
    return false;
  }
  void end_run(const std::string& run_id, const char* status) {
    Value& run = runs[run_id];
    run.set("status", status);
    run.set("ended_at_ms", static_cast<long long>(now_ms()));
    for (auto it = leases.begin(); it != leases.end();) {
      it = it->second.run_id == run_id ? leases.erase(it) : std::next(it);
    }
  }
};

FakeNullTickets::FakeNullTickets() : server_(std::make_unique<httplib::Server>()), state_(std::make_unique<State>()) {
  server_->set_tcp_nodelay(true);
  route();
  port_ = server_->bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

FakeNullTickets::~FakeNullTickets() {
  server_->stop();
  thread_.join();
}

std::string FakeNullTickets::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void FakeNullTickets::route() {
  State& s = *state_;
  // Recorded before the response goes out (httplib's logger runs after it is
  // sent, so a client could act on the answer before its call was recorded).
  server_->set_post_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    TrackerCall call;
    call.method = req.method;
    call.path = req.path;
    auto parsed = parse_json(req.body);
    if (parsed.ok()) call.body = *parsed;
    call.bearer = bearer_of(req);
    call.status = res.status;
    std::lock_guard<std::mutex> lock(s.mu);
    if (req.path.find("/heartbeat") != std::string::npos && res.status >= 300) s.heartbeat_refused = true;
    s.calls.push_back(std::move(call));
    s.cv.notify_all();
  });

  server_->Post("/leases/claim", [&s](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.api_token.empty() && bearer_of(req) != s.api_token) return error(res, 401, "unauthorized", "Missing or invalid Authorization header");
    auto parsed = parse_json(req.body);
    if (!parsed.ok()) return error(res, 400, "invalid_json", "Invalid JSON body");
    const Value& body = *parsed;  // const: reads never insert keys
    if (!body["agent_id"].is_string() || !body["agent_role"].is_string()) {
      return error(res, 400, "invalid_json", "Invalid JSON body");
    }
    const std::string role = body["agent_role"].as_string();
    const int64_t ttl = body["lease_ttl_ms"].get_int(300000);
    const Value& per_state = body["concurrency"]["per_state"];
    for (const std::string& id : s.order) {
      const Value& task = s.tasks.at(id);
      if (s.role_of(task) != role || s.lease_of_task(id)) continue;
      if (task["next_eligible_at_ms"].get_int(0) > now_ms()) continue;
      const std::string stage = task["stage"].get_string("");
      if (s.honour_per_state && per_state[stage].is_int()) {
        int64_t held = 0;
        for (const auto& [lid, l] : s.leases) held += s.active(l) && State::field(s.tasks, l.task_id, "stage") == stage;
        if (held >= per_state[stage].as_int()) continue;
      }
      int64_t attempt = 1;
      for (const auto& [rid, run] : s.runs) attempt += run["task_id"].get_string("") == id;
      const std::string n = std::to_string(s.next_id++);
      Value run = Value::object({{"id", "run-" + n},
                                 {"task_id", id},
                                 {"attempt", static_cast<long long>(attempt)},
                                 {"status", "running"},
                                 {"agent_id", body["agent_id"]},
                                 {"agent_role", role},
                                 {"started_at_ms", static_cast<long long>(now_ms())},
                                 {"ended_at_ms", Value()}});
      s.runs["run-" + n] = run;
      s.latest_run[id] = "run-" + n;
      State::Lease lease{"lease-" + n, "token-" + n, "run-" + n, id, ttl, now_ms() + ttl};
      s.leases[lease.id] = lease;
      s.note_leases();
      return reply(res, 200, Value::object({{"task", task},
                                            {"run", run},
                                            {"lease_id", lease.id},
                                            {"lease_token", lease.token},
                                            {"expires_at_ms", static_cast<long long>(lease.expires_at_ms)}}));
    }
    res.status = 204;
  });

  server_->Post(R"(/leases/([^/]+)/heartbeat)", [&s](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.heartbeat_status) return error(res, s.heartbeat_status, "scripted", "scripted heartbeat answer");
    auto it = s.leases.find(req.matches[1]);
    if (it == s.leases.end()) return error(res, 404, "not_found", "Lease not found");
    if (it->second.token != bearer_of(req)) return error(res, 401, "unauthorized", "Invalid token");
    if (!s.active(it->second)) return error(res, 410, "expired", "Lease expired");
    it->second.expires_at_ms = now_ms() + it->second.ttl_ms;
    reply(res, 200, Value::object({{"expires_at_ms", static_cast<long long>(it->second.expires_at_ms)}}));
  });

  server_->Get(R"(/tasks/([^/]+))", [&s](const httplib::Request& req, httplib::Response& res) {
    std::unique_lock<std::mutex> lock(s.mu);
    if (s.hold_reads_until_refused_heartbeat) {
      auto latest = s.latest_run.find(req.matches[1]);
      const bool run_ended = latest != s.latest_run.end() && s.runs[latest->second]["status"].get_string("") != "running";
      if (run_ended) s.cv.wait_for(lock, std::chrono::seconds(10), [&s] { return s.heartbeat_refused; });
    }
    if (!s.api_token.empty() && bearer_of(req) != s.api_token) return error(res, 401, "unauthorized", "Missing or invalid Authorization header");
    if (s.task_read_status) return error(res, s.task_read_status, "scripted", "scripted task read answer");
    auto it = s.tasks.find(req.matches[1]);
    if (it == s.tasks.end()) return error(res, 404, "not_found", "Task not found");
    Value out = it->second;
    auto latest = s.latest_run.find(it->first);
    if (latest != s.latest_run.end()) out.set("latest_run", s.runs[latest->second]);
    out.set("available_transitions", s.transitions_of(it->second));
    reply(res, 200, out);
  });

  server_->Post(R"(/runs/([^/]+)/(transition|fail|events))", [&s](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s.mu);
    const std::string run_id = req.matches[1];
    const std::string what = req.matches[2];
    State::Lease* lease = nullptr;
    if (!s.check_run_lease(run_id, bearer_of(req), res, &lease)) return;
    auto parsed = parse_json(req.body);
    if (!parsed.ok() || !parsed->is_object()) return error(res, 400, "invalid_json", "Invalid JSON body");
    const Value& body = *parsed;
    auto found = s.tasks.find(lease->task_id);
    if (found == s.tasks.end()) return error(res, 404, "not_found", "Task not found");
    Value& task = found->second;
    if (what == "events") {
      if (!body["kind"].is_string()) return error(res, 400, "invalid_json", "Invalid JSON body");
      return reply(res, 201, Value::object({{"id", s.next_id++}}));
    }
    if (what == "fail") {
      if (!body["error"].is_string()) return error(res, 400, "invalid_json", "Invalid JSON body");
      s.end_run(run_id, "failed");
      task.set("next_eligible_at_ms", static_cast<long long>(now_ms() + task["retry_delay_ms"].get_int(0)));
      return reply(res, 200, Value::object({{"status", "failed"}}));
    }
    const std::string trigger = body["trigger"].get_string("");
    const std::string stage = task["stage"].get_string("");
    if (body["expected_stage"].is_string() && body["expected_stage"].as_string() != stage) {
      return error(res, 409, "expected_stage_mismatch", "Current task stage does not match expected_stage");
    }
    if (body["expected_task_version"].is_int() &&
        body["expected_task_version"].as_int() != task["task_version"].get_int(0)) {
      return error(res, 409, "task_version_mismatch", "Current task version does not match expected_task_version");
    }
    const Value transitions = s.transitions_of(task);
    for (const Value& t : transitions.as_array()) {
      if (t["trigger"].get_string("") != trigger) continue;
      const std::string to = t["to"].get_string("");
      task.set("stage", to);
      task.set("task_version", static_cast<long long>(task["task_version"].get_int(0) + 1));
      s.end_run(run_id, "completed");
      return reply(res, 200, Value::object({{"previous_stage", stage}, {"new_stage", to}, {"trigger", trigger}}));
    }
    error(res, 400, "invalid_transition", "No valid transition for this trigger from current stage");
  });
}

void FakeNullTickets::add_pipeline(const std::string& id, std::map<std::string, std::string> roles,
                                   std::vector<std::vector<std::string>> transitions) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->pipelines[id] = State::Pipeline{std::move(roles), std::move(transitions)};
}

void FakeNullTickets::add_task(Value task_fields) {
  const Value& fields = task_fields;
  std::lock_guard<std::mutex> lock(state_->mu);
  const int64_t now = now_ms();
  Value task = Value::object({{"id", fields["id"]},
                              {"pipeline_id", fields["pipeline_id"]},
                              {"stage", fields["stage"]},
                              {"title", fields["title"].is_string() ? fields["title"] : Value("task " + fields["id"].get_string(""))},
                              {"description", fields["description"].get_string("")},
                              {"priority", fields["priority"].get_int(0)},
                              {"metadata", fields["metadata"].is_null() ? Value::object() : fields["metadata"]},
                              {"task_version", 1},
                              {"next_eligible_at_ms", 0},
                              {"retry_delay_ms", fields["retry_delay_ms"].get_int(0)},
                              {"max_attempts", Value()},
                              {"dead_letter_stage", Value()},
                              {"dead_letter_reason", Value()},
                              {"created_at_ms", static_cast<long long>(now)},
                              {"updated_at_ms", static_cast<long long>(now)}});
  const std::string id = task["id"].get_string("");
  state_->order.push_back(id);
  state_->tasks[id] = std::move(task);
  state_->cv.notify_all();
}

void FakeNullTickets::set_stage(const std::string& task_id, const std::string& stage) {
  std::lock_guard<std::mutex> lock(state_->mu);
  Value& task = state_->tasks[task_id];
  task.set("stage", stage);
  task.set("task_version", static_cast<long long>(task["task_version"].get_int(0) + 1));
}

void FakeNullTickets::remove_task(const std::string& task_id) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->tasks.erase(task_id);
  state_->order.erase(std::remove(state_->order.begin(), state_->order.end(), task_id), state_->order.end());
}

void FakeNullTickets::set_heartbeat_status(int status) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->heartbeat_status = status;
}

void FakeNullTickets::set_task_read_status(int status) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->task_read_status = status;
}

void FakeNullTickets::set_honour_per_state(bool honour) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->honour_per_state = honour;
}

void FakeNullTickets::hold_task_reads_until_refused_heartbeat() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->hold_reads_until_refused_heartbeat = true;
}

void FakeNullTickets::set_api_token(std::string token) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->api_token = std::move(token);
}

std::vector<TrackerCall> FakeNullTickets::calls() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->calls;
}

std::vector<TrackerCall> FakeNullTickets::calls(const std::string& method, const std::string& path_part) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<TrackerCall> out;
  for (const TrackerCall& c : state_->calls) {
    if (c.method == method && c.path.find(path_part) != std::string::npos) out.push_back(c);
  }
  return out;
}

size_t FakeNullTickets::count(const std::string& method, const std::string& path_part) const {
  return calls(method, path_part).size();
}

Value FakeNullTickets::task(const std::string& task_id) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->tasks.find(task_id);
  return it == state_->tasks.end() ? Value() : it->second;
}

Value FakeNullTickets::run(const std::string& run_id) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->runs.find(run_id);
  return it == state_->runs.end() ? Value() : it->second;
}

int FakeNullTickets::max_leases() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->max_leases;
}

int FakeNullTickets::max_leases_for_role(const std::string& role) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->max_by_role.find(role);
  return it == state_->max_by_role.end() ? 0 : it->second;
}

int FakeNullTickets::max_leases_for_pipeline(const std::string& pipeline) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->max_by_pipeline.find(pipeline);
  return it == state_->max_by_pipeline.end() ? 0 : it->second;
}

int FakeNullTickets::active_leases() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  int n = 0;
  for (const auto& [id, l] : state_->leases) n += state_->active(l);
  return n;
}

bool FakeNullTickets::wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    std::unique_lock<std::mutex> lock(state_->mu);
    if (state_->cv.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(20))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= deadline) {
      lock.unlock();
      return pred();
    }
  }
}

}  // namespace orch::testing
