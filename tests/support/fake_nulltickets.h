// SPDX-License-Identifier: MIT
//
// FakeNullTickets: a NullTickets server on 127.0.0.1 (random port) for
// pull-mode tests. It implements the endpoints orch calls, in NullTickets'
// wire format (reference/nullboiler-api.md §8.3; nullclaw/nulltickets api):
//
//   POST /leases/claim              {agent_id, agent_role, lease_ttl_ms, concurrency.per_state}
//                                   -> 200 {task, run, lease_id, lease_token, expires_at_ms} | 204
//   POST /leases/{id}/heartbeat     bearer = lease token -> {expires_at_ms} | 401/404/410
//   GET  /tasks/{id}                -> task + latest_run + available_transitions | 404
//   POST /runs/{id}/transition      {trigger, expected_stage, expected_task_version, usage}
//   POST /runs/{id}/fail            {error, usage}: run failed, lease deleted
//   POST /runs/{id}/events          {kind, data} -> 201 {id}
//
// Pipelines map stages to the role that may claim them; tasks are claimed in
// the order they were added. Every call is recorded (method, path, body,
// bearer token, answer) and the fake can be scripted: move a task upstream,
// delete it, fail heartbeats or task reads with a status, ignore per_state,
// hold task reads until a heartbeat has been refused.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "orch/value.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace orch::testing {

struct TrackerCall {
  std::string method;
  std::string path;
  Value body;          // parsed JSON body (null when none)
  std::string bearer;  // the Authorization bearer token, "" when absent
  int status = 0;      // what the fake answered
};

class FakeNullTickets {
 public:
  FakeNullTickets();
  ~FakeNullTickets();
  FakeNullTickets(const FakeNullTickets&) = delete;
  FakeNullTickets& operator=(const FakeNullTickets&) = delete;

  std::string url() const;

  // A pipeline: `roles` maps each stage to the role that claims it ("" or
  // absent: nobody, e.g. a terminal stage); `transitions` are {from, to, trigger}.
  void add_pipeline(const std::string& id, std::map<std::string, std::string> roles,
                    std::vector<std::vector<std::string>> transitions);
  // A task: `fields` needs id, pipeline_id and stage; title, description,
  // priority, metadata default. task_version starts at 1.
  void add_task(Value fields);

  // Scripting.
  void set_stage(const std::string& task_id, const std::string& stage);  // an upstream move
  void remove_task(const std::string& task_id);
  void set_heartbeat_status(int status);   // 0: normal answers
  void set_task_read_status(int status);   // 0: normal answers (e.g. 503 for GET /tasks/{id})
  void set_honour_per_state(bool honour);  // default true
  void set_api_token(std::string token);   // required on claim and task reads when set
  // From now on, GET /tasks/{id} of a task whose latest run has ended (e.g.
  // its agent transitioned it) waits until some heartbeat has been refused:
  // orch then sees the refusal before it can see the move (a read waits
  // 10 s at most).
  void hold_task_reads_until_refused_heartbeat();

  // Inspection.
  std::vector<TrackerCall> calls() const;
  // Calls whose method matches and whose path contains `path_part`.
  std::vector<TrackerCall> calls(const std::string& method, const std::string& path_part) const;
  size_t count(const std::string& method, const std::string& path_part) const;
  Value task(const std::string& task_id) const;  // null when unknown
  Value run(const std::string& run_id) const;
  // Most leases ever held at once: in total, per role, per pipeline.
  int max_leases() const;
  int max_leases_for_role(const std::string& role) const;
  int max_leases_for_pipeline(const std::string& pipeline) const;
  int active_leases() const;

  // Waits until `pred` holds, re-checking after every request (and every
  // 20 ms, for predicates about other objects). False on timeout.
  bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) const;

 private:
  struct State;
  void route();
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<State> state_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace orch::testing
