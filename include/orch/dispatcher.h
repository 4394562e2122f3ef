// SPDX-License-Identifier: MIT
//
// Dispatcher: how the engine hands a node's work to a worker. The engine calls
// dispatch() for every task/agent attempt (and every send item) that is not
// bound to a C++ function; the dispatcher picks a worker, talks its protocol and
// reports the reply through the callback. Network protocols (HTTP, A2A, MQTT,
// Redis Streams) and the worker registry are dispatchers; InProcessWorkers
// below runs C++ callables as workers.
//
// Contract: dispatch() must not block on the worker. It calls `done` exactly
// once, from any thread, possibly before dispatch() returns. The engine enforces
// the deadline itself; a dispatcher may also stop early when it passes.
//
// Thread-safety: implementations must accept calls from many threads at once.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "orch/clock.h"
#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch {

struct WorkerRequest {
  // Unique per call: "<step_id>#<attempt>.<turn>" (make_call_id). Cancelling
  // a step id cancels every call of that step.
  std::string call_id;
  std::string step_id;       // the step (node execution) the call is for
  std::string run_id;
  std::string node_name;
  std::string node_type;     // "task" or "agent"
  std::string prompt;        // the rendered prompt
  std::vector<std::string> worker_tags;
  int attempt = 1;
  int turn = 1;              // agent turns
  std::string session_id;    // stable across an agent's turns
  Value state;               // state snapshot with __meta
  Value item;                // send item, null otherwise
  SteadyTime deadline;
  // W3C traceparent of this call's span (empty when the engine has no
  // tracer). HTTP protocols send it as the `traceparent` header, MQTT and
  // Redis as a `traceparent` field of the message (docs/async-workers.md).
  std::string traceparent;
};

struct WorkerReply {
  Status status;             // non-OK: the attempt failed
  bool retryable = true;     // false: do not retry (e.g. 4xx other than 429)
  int64_t retry_after_ms = -1;  // the worker asked to wait (429 Retry-After)
  std::string output;        // the output text
  Value envelope;            // top-level reply fields (goto, state_updates, usage, ...)
  std::string worker_id;
  std::string worker_protocol;  // set by the worker registry ("webhook", "mqtt", ...)
};

class ORCH_EXPORT Dispatcher {
 public:
  using Callback = std::function<void(WorkerReply)>;
  virtual ~Dispatcher() = default;
  virtual void dispatch(const WorkerRequest& request, Callback done) = 0;
  // Best effort: abandon an in-flight call (its callback may still come).
  virtual void cancel(const std::string& call_id) { (void)call_id; }
  // True for a dispatcher that runs the worker itself inside dispatch()
  // (InProcessWorkers): the engine then calls it only from its own threads.
  // Otherwise it may call dispatch() from a store's writer thread, right
  // after the write the call waited for (a reply that comes back inside
  // dispatch() is then handled on the engine's threads).
  virtual bool runs_workers_inline() const { return false; }
};

// The call id of one attempt and turn of a step.
ORCH_EXPORT std::string make_call_id(const std::string& step_id, int attempt, int turn);
// The step id a call id belongs to (the text before '#'; all of it without one).
ORCH_EXPORT std::string_view step_of_call_id(std::string_view call_id);

// ReplyScope: an optional part of the Dispatcher contract, for a dispatcher
// (or WorkerProtocol) that delivers replies on its own threads. Open a scope
// around a `done(reply)` call: the worker calls the engine starts while it
// handles that reply are then sent from this thread, in order, once the scope
// closes, instead of being handed to the engine's thread pool. A reply then
// leads on to the next call without two thread wake-ups. Open one only where
// nothing is locked when it closes and where sending may block a little.
//
// Scopes nest: only the outermost one on a thread sends; calls made while it
// sends (a dispatcher that answers at once) join its queue rather than
// deepening the stack.
//
// A scope opened with `on_event_loop` says that this thread moves the bytes
// of many calls and must not block: the engine then handles the reply here
// only when nothing in that waits (its store writes without waiting,
// Store::writes_without_waiting), and hands it to its own threads otherwise.
//
// Thread-safety: per thread; destroy a scope on the thread that made it.
class ORCH_EXPORT ReplyScope {
 public:
  explicit ReplyScope(bool on_event_loop = false);
  ~ReplyScope();
  ReplyScope(const ReplyScope&) = delete;
  ReplyScope& operator=(const ReplyScope&) = delete;

  // The engine's side: queues `send` when a scope is open on this thread and
  // returns true; false when none is (the caller sends it some other way).
  static bool defer(std::function<void()>& send);
  // Whether the outermost scope open on this thread is an event loop's.
  static bool on_event_loop();

 private:
  // A vector, not a deque: most scopes send one call or none, and an empty
  // deque already allocates.
  std::vector<std::function<void()>> sends_;
  bool outermost_ = false;
};

// The tag rule of worker selection (SPEC §6): a node that wants no tags may
// use any worker; otherwise the worker must carry at least one wanted tag.
ORCH_EXPORT bool tags_match(const std::vector<std::string>& worker_tags, const std::vector<std::string>& wanted);

// Runs C++ callables as workers, selected by tag. A handler receives the
// request and returns the reply; it runs on the engine's worker threads.
class ORCH_EXPORT InProcessWorkers : public Dispatcher {
 public:
  using Handler = std::function<WorkerReply(const WorkerRequest&)>;
  // Registers `handler` as worker `id` serving `tags` (empty: serves any node).
  void add(std::string id, std::vector<std::string> tags, Handler handler);
  void dispatch(const WorkerRequest& request, Callback done) override;
  bool runs_workers_inline() const override { return true; }

 private:
  struct Entry {
    std::string id;
    std::vector<std::string> tags;
    Handler handler;
  };
  std::mutex mu_;
  std::vector<std::shared_ptr<Entry>> entries_;
};

}  // namespace orch
