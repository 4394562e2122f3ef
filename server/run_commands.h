// SPDX-License-Identifier: MIT
//
// RunCommandRelay: the control calls on a run (cancel, resume, state
// injection, retry, replay, delete) work through any orch serve instance
// sharing a database, whichever instance holds the run.
//
// A call is first tried on this instance's engine. When another instance
// holds the run (the engine answers Aborted: its lease is live elsewhere),
// the call is written as a Store host record in collection "run_commands"
// and this instance waits for its outcome. Every instance hears of the record
// through Store::watch_changes; the one whose engine holds the run applies it
// and writes the outcome (a status code and message) into the record; the
// caller, woken the same way, deletes the record and returns that outcome.
// When the holder dies instead of answering, its lease runs out and the
// caller applies the call itself (it retries locally every second while it
// waits, and a claim succeeds only once the lease has expired), so a call
// waits at most about one lease TTL (never more than 2 minutes).
//
// Notifications can be lost while an instance reconnects to its database, so
// the relay also looks at the collection every few seconds (a list of a
// collection that is almost always empty).
//
// Without a shared store (SQLite, memory) there is no other instance: run()
// is the engine call and nothing else starts.
//
// Thread-safety: run() may be called from any thread, concurrently;
// on_change() is the store watch's callback. The destructor stops the relay's
// thread; calls still waiting return Unavailable.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "orch/clock.h"
#include "orch/engine.h"
#include "orch/store.h"
#include "orch/value.h"

namespace orch::server {

inline constexpr const char* kRunCommandsCollection = "run_commands";

// One control call. `args` by op: resume {"state_updates"}, inject
// {"updates", "apply_after_step"}, replay {"checkpoint_id"}; the others none.
struct RunCommand {
  std::string op;  // "cancel", "resume", "inject", "retry", "replay", "delete"
  std::string run_id;
  Value args = Value::object();
};

// Applies `command` to `engine`; InvalidArgument for an unknown op or
// arguments of the wrong type (a record another instance wrote is input too).
Status apply_run_command(Engine& engine, const RunCommand& command);

class RunCommandRelay {
 public:
  // `shared`: whether other instances share the store (it announces
  // changes); without, no thread starts. `wait_ms`: how long a forwarded
  // call waits at most (the lease TTL plus a margin; held to 1 s … 2 min).
  RunCommandRelay(std::shared_ptr<Store> store, Engine& engine, std::shared_ptr<Clock> clock, bool shared,
                  int64_t wait_ms);
  ~RunCommandRelay();
  RunCommandRelay(const RunCommandRelay&) = delete;
  RunCommandRelay& operator=(const RunCommandRelay&) = delete;

  // The command's outcome, wherever the run is held. Unavailable when its
  // holder neither answered nor let its lease run out within wait_ms, or
  // when too many calls are already waiting here.
  Status run(const RunCommand& command);

  // The store announced a change to the "run_commands" collection.
  void on_change();

  // Forwarded commands this instance applied for others (tests, metrics).
  uint64_t applied_for_others() const;

 private:
  struct Waiter {
    bool answered = false;
    Status outcome;
  };
  void loop();
  // One look at the collection: applies what this engine holds, answers
  // waiters, drops records nobody collected.
  void scan();
  Status forward(const RunCommand& command);
  // Whether record `id` holds an outcome already (then stored in `outcome`).
  bool stored_outcome(const std::string& id, Status* outcome);

  std::shared_ptr<Store> store_;
  Engine& engine_;
  std::shared_ptr<Clock> clock_;
  const bool shared_;
  const int64_t wait_ms_;

  mutable std::mutex mu_;
  std::condition_variable wake_;    // the relay's thread: a change, or stop
  std::condition_variable answer_;  // callers waiting in forward()
  bool changed_ = false;
  bool stopping_ = false;
  std::map<std::string, Waiter> waiters_;  // by command record id
  std::set<std::string> applied_;          // record ids applied here (each once)
  uint64_t applied_for_others_ = 0;
  std::thread thread_;
};

}  // namespace orch::server
