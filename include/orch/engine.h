// SPDX-License-Identifier: MIT
//
// Engine: runs workflows. Open one with EngineOptions, start runs, and the
// engine advances each run on its own as worker replies arrive: the nodes of a
// superstep run concurrently, their updates are applied in definition order
// when the superstep ends, and a checkpoint is committed to the Store before
// the next superstep starts. Nothing polls: replies, timers and API calls wake
// the run they concern.
//
// Ownership: the Engine owns its threads. Store, Dispatcher and Clock are
// shared with the host. Destroying the Engine stops scheduling and waits for
// in-process calls to return; runs stay in the store as they were (running
// runs continue when an engine is opened on the same store and recover() is
// called).
//
// Thread-safety: every method may be called from any thread.
//
//   orch::EngineOptions options;
//   options.store = orch::new_memory_store();
//   options.dispatcher = workers;  // e.g. a WorkerRegistry (orch/worker_registry.h)
//   auto engine = orch::Engine::open(options);
//   auto wf = orch::parse_workflow_json(text);
//   orch::RunOptions run_options;
//   run_options.input = orch::Value::object({{"topic", "graphs"}});
//   auto run = (*engine)->start_run(*wf, run_options);
//   auto done = (*engine)->wait(*run, std::chrono::seconds(10));
//
// Or, for a run of in-process nodes (Node::function), executed on the
// calling thread without a hand-off to the engine's threads:
//   auto record = (*engine)->invoke(*wf, run_options);
//
// Every call returns a Status or Result: check ok() before using the value
// (examples/hello_graph.cc is this sketch as a complete program).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orch/clock.h"
#include "orch/export.h"
#include "orch/status.h"
#include "orch/store.h"
#include "orch/value.h"
#include "orch/dispatcher.h"
#include "orch/template.h"
#include "orch/trace.h"
#include "orch/workflow.h"

namespace orch {

struct EngineOptions {
  // REQUIRED.
  std::shared_ptr<Store> store;
  // Where task/agent nodes without a C++ function go. Null: such nodes fail
  // with "no worker available".
  std::shared_ptr<Dispatcher> dispatcher;
  // Default: Clock::system().
  std::shared_ptr<Clock> clock;
  // Threads for in-process node functions and engine work. 0: hardware threads.
  size_t threads = 0;
  // Deadline of a worker call when the node sets no timeout_ms. (An
  // in-process function gets a deadline only from its node's timeout_ms.)
  int64_t default_timeout_ms = 300000;
  // How Engine::invoke runs the in-process nodes (Node::function) of one
  // superstep. false: one after the other on the caller's thread (no thread
  // hand-off; right for short functions). true: on the engine's threads, in
  // parallel (right for functions that take long or block), as runs started
  // with start_run always do. Either way their updates are applied in
  // definition order when the superstep ends.
  bool parallel_function_nodes = false;
  // false: the engine writes none of the events every node and superstep
  // makes (step.started, step.completed, task_start, task_result, updates,
  // values, checkpoint.created); runs' lifecycle events, failures, retries
  // and custom events are still written. For a host that reads runs' results
  // and not their event logs: those events are about a third of the work of
  // a short in-process run (seven a node on SQLite: seven rows). orch serve
  // needs them all (its event list, SSE stream modes, metrics and callbacks).
  bool node_events = true;
  // Supersteps before a run fails, when neither the workflow nor the run says.
  int64_t default_recursion_limit = 1000;
  Durability durability = Durability::kSync;
  // Resolves workflow ids: for subgraph nodes, and for runs reloaded after a
  // restart (recover()), where it takes precedence over the run's stored JSON so
  // workflows with C++ functions bound can be recovered. Default: the Store's
  // workflows for subgraphs, the stored definition for reloaded runs.
  std::function<Result<std::shared_ptr<const Workflow>>(const std::string& id)> workflow_resolver;
  // Identifies this engine as the owner of the runs it claims
  // (Store::claim_run_lease) when it starts or loads a run; every batch it
  // writes for a run carries this owner and the lease's epoch, so once
  // another engine has taken the run over the store refuses them and this
  // engine drops the run. Default: a random id. Each engine sharing a
  // database needs its own id (two engines with one id would not fence each
  // other); runs still leased by another owner are taken over by recover()
  // or take_over_expired_runs() when that lease expires (the host renews
  // its leases with Store::renew_leases).
  std::string owner_id;
  // Lease length asked for when claiming a run.
  int64_t lease_ms = 60000;
  // What recover() does about runs it finds still leased by another live
  // owner. true (the default): it lists the running runs again every
  // lease_ms for as long as there are such runs, and takes each over once
  // its lease has run out; right for a host without a takeover loop. A host
  // that calls take_over_expired_runs() on a timer (orch serve's lease
  // keeper) sets false: recover() then looks once, and the takeover loop
  // claims the rest as their leases run out. (With many engines on one
  // database the retries would have each of them list every running run of
  // every other engine, every lease_ms, forever.)
  bool recover_retries_leased_runs = true;
  // A file where the engine notes which run each thread was executing when
  // the process crashed (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT); recover()
  // reads and empties it. Setting it installs process-wide handlers for those
  // signals (they hand the signal on to the previous handler): give it to one
  // engine per process. Empty: no crash attribution.
  std::string crash_log_path;
  // How many times recover() resumes a run that crashed the process (as
  // crash_log_path tells); the next time the run is failed instead, so a run
  // that crashes its process cannot crash it again on every restart. Runs
  // that were merely in flight when the process stopped are always resumed.
  // 0: no limit.
  int64_t max_recoveries = 3;
  // Asked about each run recover() or take_over_expired_runs() would resume
  // (after it is claimed): "" resumes it; any other answer fails the run with
  // that answer as its error instead. For runs whose work lived in the
  // process that stopped and cannot continue from a checkpoint elsewhere
  // (orch serve's pull-mode runs: the NullTickets lease and the agent died
  // with that process, and NullTickets offers the task again). Called on
  // the thread that recovers or takes over, with the run locked: it must not
  // call back into the engine. Default (empty): every run is resumed.
  std::function<std::string(const RunRecord& run)> resume_veto;
  // Node results kept for nodes with cache_ttl_ms; past this many the least
  // recently used goes.
  size_t max_cached_results = 10000;
  // A run's state may hold this many bytes (as JSON, about); a superstep whose
  // updates would grow it past that fails the run, naming its nodes. 0: no limit.
  size_t max_state_bytes = 16 * 1024 * 1024;
  // Subgraph runs one top-level run may start in all (children, their
  // children, ...); the subgraph node that would start one more fails. A
  // workflow whose subgraphs call it back would otherwise fan out without
  // end. 0: no limit.
  size_t max_descendant_runs = 1000;
  // Items one send node may fan out to; a send whose items list is longer
  // fails, naming the limit, before it starts any call. Without it only
  // max_state_bytes bounds the list: millions of tiny items, each a worker
  // call held in memory until a worker frees up. 0: no limit.
  size_t max_send_items = 10000;
  // Runs this engine holds at once (running or interrupted, with their
  // contexts in memory); start_run beyond it is ResourceExhausted. 0: no limit.
  size_t max_live_runs = 100000;
  // A rendered prompt larger than this fails its node (not retried) instead of
  // being built. 0: no limit.
  size_t max_prompt_bytes = TemplateContext::kDefaultMaxOutputBytes;
  // Run config keys that prompts may read as template roots of the same name
  // (TemplateContext::extra_roots): with {"ticket"}, a run whose config has a
  // "ticket" object renders {{ticket.title}}. orch serve's pull mode: {"task"}.
  std::vector<std::string> config_template_roots;
  // Receives the spans of every run execution (see orch/trace.h). Null: no
  // tracing, and no tracing cost.
  std::shared_ptr<TraceObserver> tracer;
};

// Options of one run.
struct RunOptions {
  Value input = Value::object();
  Value config = Value::object();   // recursion_limit, durability, interrupt_before/after, ...
  std::string run_id;               // default: a new UUID
  std::string workflow_id;          // recorded on the run
  std::string idempotency_key;
  // Stored with the run for the host (RunRecord::host_data); the engine never reads it.
  Value host_data;
  // Writes a pending step record for every node when the run starts, so a
  // reader lists them all at once (NullBoiler's legacy `steps` runs do); a
  // node's first execution takes its record over.
  bool plan_steps = false;
  // A W3C traceparent (a caller's span): the run's spans continue that trace.
  // Malformed: ignored (a new trace). Only read when EngineOptions::tracer is set.
  std::string traceparent;
};

// An event as delivered to subscribers (also stored, see Store::append_event).
using EventListener = std::function<void(const EventRecord&)>;

class ORCH_EXPORT Engine {
 public:
  static Result<std::unique_ptr<Engine>> open(EngineOptions options);
  virtual ~Engine() = default;

  // Creates and starts a run; returns its id. InvalidArgument for an invalid
  // workflow; AlreadyExists for a reused idempotency key (message = run id).
  virtual Result<std::string> start_run(std::shared_ptr<const Workflow> workflow,
                                        RunOptions options) = 0;
  // Runs a new run to its end and returns its final record (status
  // completed, failed, cancelled or interrupted): start_run and wait in one,
  // but the run is executed on the calling thread as long as its nodes are
  // in-process functions, route/transform/interrupt or send nodes over
  // functions, with no hand-off to the engine's threads (see
  // EngineOptions::parallel_function_nodes). Nodes that call a worker, or a
  // subgraph, are waited for as start_run + wait would. The run is stored,
  // checkpointed and evented exactly as a started run is. Errors: as
  // start_run's.
  virtual Result<RunRecord> invoke(std::shared_ptr<const Workflow> workflow, RunOptions options) = 0;
  // Continues an interrupted run, applying `state_updates` through the reducers.
  virtual Status resume_run(const std::string& run_id, const Value& state_updates) = 0;
  // Stops a run: status cancelled, in-flight calls abandoned, nothing later
  // overwrites it. FailedPrecondition when the run already ended.
  virtual Status cancel_run(const std::string& run_id) = 0;
  // Re-runs the failed nodes of a failed run from its latest checkpoint.
  virtual Status retry_run(const std::string& run_id) = 0;
  // A new run from checkpoint `checkpoint_id` of any run, with `state_overrides`
  // applied through the reducers. Returns the new run id.
  virtual Result<std::string> fork_run(const std::string& checkpoint_id,
                                       const Value& state_overrides) = 0;
  // Moves run `run_id` back to its checkpoint `checkpoint_id` and continues.
  virtual Status replay_run(const std::string& run_id, const std::string& checkpoint_id) = 0;
  // Applies updates now, or after node `after_node` next completes.
  virtual Status inject_state(const std::string& run_id, const Value& updates,
                              const std::string& after_node) = 0;

  // Cancels the run if it is still active, then removes it and everything it
  // owns from the store. Aborted, and nothing removed, when another engine
  // sharing the store holds the active run.
  virtual Status delete_run(const std::string& run_id) = 0;

  virtual Result<RunRecord> get_run(const std::string& run_id) = 0;
  virtual std::shared_ptr<Store> store() const = 0;

  // Blocks until the run is no longer pending/running (or `timeout` passes);
  // returns its record. DeadlineExceeded on timeout.
  virtual Result<RunRecord> wait(const std::string& run_id, std::chrono::milliseconds timeout) = 0;

  // Calls `listener` for every new event of `run_id` (empty: of every run).
  // Returns an id for unsubscribe(). Listeners run on engine threads and must
  // not block.
  virtual uint64_t subscribe(const std::string& run_id, EventListener listener) = 0;
  virtual void unsubscribe(uint64_t subscription) = 0;

  // Continues every run the store has as running (after a restart). Runs
  // leased by another owner whose lease has not run out are left to it; see
  // EngineOptions::recover_retries_leased_runs for what happens to them.
  virtual Status recover() = 0;

  // Takeover, for several engines on one database: claims up to `limit`
  // top-level runs whose lease has run out (Store::list_expired_leases:
  // their owner stopped renewing, e.g. its process died) and continues them
  // here; a subgraph child continues through its parent. Returns how many it
  // took over; a run another engine claimed first is skipped. Unimplemented
  // when the store cannot list expired leases.
  virtual Result<size_t> take_over_expired_runs(size_t limit) = 0;

  // Number of runs currently executing in this engine.
  virtual size_t active_runs() const = 0;

  // Whether this engine holds `run_id` now (running or interrupted, its
  // context in memory, its lease not lost): the engine a control call on the
  // run must reach when several share a database (orch serve forwards it).
  virtual bool holds_run(const std::string& run_id) const = 0;
};

}  // namespace orch
