// SPDX-License-Identifier: MIT
//
// AgentDriver: the `subprocess` side of pull mode. The tracker's own engine
// has one worker, the AgentDispatcher, which parks each agent call with the
// task whose run it belongs to; the task's thread then serve()s it: spawns
// the agent on a free port, waits for it to be healthy, sends its turns
// (recorded as `agent.spawned` / `agent.turn` events of the run and as
// NullTickets run events), stops after `done`, max_turns, or once the agent
// moved the task itself, and answers the call.
//
// Who owns what: Tracker::Impl owns the driver and what its Deps refer to;
// the agent of a task lives only inside serve() (TrackedTask::agent points at
// it meanwhile, so that aborts can kill it). The driver owns its port set.
//
// Thread-safety: every method may be called from any thread; serve() runs on
// the task's thread and blocks for the agent's whole life.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "orch/dispatcher.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "orch/template.h"
#include "pull/tracked_task.h"
#include "pull/tracker_client.h"
#include "pull/tracker_config.h"

namespace orch::server {

class AgentDriver {
 public:
  struct Deps {
    TaskBoard& board;
    const TrackerConfig& cfg;
    TrackerClient& client;
    Store& store;  // the runs' `agent.*` events
    std::function<void(const std::string& run_id)> publish;  // wakes the run's SSE streams
  };

  explicit AgentDriver(Deps deps);
  AgentDriver(const AgentDriver&) = delete;
  AgentDriver& operator=(const AgentDriver&) = delete;

  // Waits for the engine's agent call of t's current run (or for the run to
  // end, or an abort), runs the agent and answers the call.
  void serve(const std::shared_ptr<TrackedTask>& t, Engine& engine);

  // What the AgentDispatcher hands over: an agent call, and its cancellation.
  void on_dispatch(const WorkerRequest& request, Dispatcher::Callback done);
  void on_cancel(const std::string& call_id);

 private:
  WorkerReply drive(const std::shared_ptr<TrackedTask>& t, const WorkerRequest& request);
  void append_run_event(const std::string& run_id, const std::string& kind, Value data);
  int allocate_port();  // 0 when the range is full
  void release_port(int port);

  Deps d_;
  Template default_continuation_;
  std::mutex ports_mu_;
  std::set<int> ports_;  // handed to running agents
};

// The only worker of the tracker's own engine. It holds the driver weakly:
// once the tracker is gone, calls are refused instead of reaching freed memory.
std::shared_ptr<Dispatcher> make_agent_dispatcher(std::weak_ptr<AgentDriver> driver);

}  // namespace orch::server
