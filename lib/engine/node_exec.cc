// SPDX-License-Identifier: MIT
//
// Running one node of a superstep: route/transform/interrupt finish at once;
// task and agent attempts (a C++ function or a worker call) run on the pool
// with a deadline timer and retry timers on the engine's Clock; send fans out
// its target per item; subgraph starts a child run and waits for it.
// Every entry point here runs with the run's mutex held; no lock is held while
// user code or a worker runs.
#include <asio/post.hpp>
#include <cmath>
#include <random>

#include "orch/event_kinds.h"
#include "orch/thread_guard.h"
#include "engine/engine_impl.h"
#include "orch/id.h"
#include "orch/state.h"
#include "orch/state_path.h"

namespace orch::internal {
namespace {

const Value& interrupted_output() {
  static const Value kOutput = Value::object({{"interrupted", true}});
  return kOutput;
}

// {"<key>": ""}, built once: the record of a call without a prompt (input)
// or without output text (output). Shared: a reader that changes its copy
// unshares it.
const Value& empty_text_object(bool input) {
  static const Value* const kInput = new Value(Value::object({{"prompt", ""}}));
  static const Value* const kOutput = new Value(Value::object({{"output", ""}}));
  return input ? *kInput : *kOutput;
}

ReplyEffects effects_of(const NodeOutput& out) {
  ReplyEffects e;
  e.updates = out.updates.is_null() ? Value::object() : out.updates;
  e.has_goto = !out.goto_nodes.empty();
  e.goto_nodes = out.goto_nodes;
  e.done = out.done;
  return e;
}

// Timeouts, back-offs and TTLs come from workflows and worker replies: a
// huge value (INT64_MAX) must not overflow a deadline. One week at most.
std::chrono::milliseconds bounded_ms(double ms) {
  constexpr double kMaxMs = 7.0 * 24 * 3600 * 1000;
  if (!(ms > 0)) return std::chrono::milliseconds(0);  // also NaN
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, kMaxMs)));
}

double jitter_factor(double jitter) {
  if (jitter <= 0) return 1.0;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return 1.0 + std::uniform_real_distribution<double>(0.0, jitter)(rng);
}

}  // namespace

Value EngineImpl::state_with_meta(const RunContext& c, int vertex, int attempt) const {
  Value s = c.state;
  int64_t step = c.version + 1;  // the superstep number, from 1
  s.set("__meta", Value::object({{"step", static_cast<long long>(step)},
                                 {"remaining_steps", static_cast<long long>(c.recursion_limit - step)},
                                 {"is_last_step", step >= c.recursion_limit},
                                 {"run_id", c.run_id_value()},
                                 {"node_name", c.compiled->graph->name_value(vertex)},
                                 {"attempt", attempt}}));
  return s;
}

Result<std::string> EngineImpl::render(const RunContext& c, const Template& tpl, const Value& state,
                                       const Value* item, int attempt) const {
  TemplateContext tc;
  tc.state = &state;
  tc.input = &c.record.input;
  tc.item = item;
  tc.config = &c.record.config;
  for (const std::string& name : options_.config_template_roots) {
    if (const Value* v = c.record.config.find(name)) tc.extra_roots.emplace_back(name, v);
  }
  tc.attempt = attempt;
  tc.max_output_bytes = options_.max_prompt_bytes;
  return tpl.render(tc);
}

// Route, transform and interrupt nodes finish where they start: one completed
// step record each (NullBoiler writes one too), in the superstep's batch.
void EngineImpl::record_instant_step(RunContext& c, NodeTask& t, Value output) {
  t.has_step_record = true;
  StepRecord step;
  step.id = t.step_id;
  step.run_id = c.record.id;
  step.node_name = c.compiled->graph->name(t.vertex);
  step.type = c.compiled->graph->type_value(t.vertex).as_string();
  step.status = StepStatus::kCompleted;
  step.superstep = c.version + 1;
  step.output = std::move(output);
  step.created_at_ms = step.started_at_ms = step.ended_at_ms = stamp_ms(c);
  write_step(c, std::move(step));
}

void EngineImpl::finish_step_record(RunContext& c, NodeTask& t) {
  const Node& node = *c.compiled->graph->node(t.vertex);
  const bool own_record = node.type == NodeType::kSend || node.type == NodeType::kSubgraph;
  if (!own_record && !(t.planned && !t.has_step_record)) return;
  StepRecord step;
  step.id = t.step_id;
  step.run_id = c.record.id;
  step.node_name = node.name;
  step.type = c.compiled->graph->type_value(t.vertex).as_string();
  const bool failed = t.outcome.kind == NodeOutcome::Kind::kFailed;
  step.status = failed ? StepStatus::kFailed : StepStatus::kCompleted;
  step.superstep = c.version + 1;
  step.child_run_id = t.child_run_id;
  step.error = failed ? t.outcome.error : std::string();
  step.created_at_ms = step.started_at_ms = t.started_ms;
  step.ended_at_ms = stamp_ms(c);
  // What the node wrote, as NullBoiler's row shows it: {"<output_key>": ...}
  // (a send's results, a subgraph's value), the last of its updates.
  if (own_record && !failed && !t.outcome.updates.empty()) step.output = t.outcome.updates.back();
  write_step(c, std::move(step));
  t.has_step_record = true;
}

void EngineImpl::launch_node(const std::shared_ptr<RunContext>& ctx, size_t index) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& node = *c.compiled->graph->node(t.vertex);
  if (!node.unknown_type.empty()) {
    complete_task(ctx, index, NodeOutcome::failure("unknown node type '" + node.unknown_type + "'"), true);
    return;
  }
  switch (node.type) {
    case NodeType::kRoute: {
      const Value* v = find_state_path(c.state, node.route.input);
      std::optional<std::string> choice;
      if (v != nullptr) choice = route_value_string(*v);
      auto is_key = [&node](const std::string& k) {
        for (const auto& r : node.route.routes) {
          if (r.first == k) return true;
        }
        return false;
      };
      if (!node.route.routes.empty() && (!choice || !is_key(*choice)) && node.route.default_route) {
        choice = node.route.default_route;
      } else if (!choice) {
        choice = node.route.default_route;
      }
      NodeOutcome o;
      o.route = choice;
      record_instant_step(c, t, choice ? Value::object({{"route", *choice}}) : Value::object({{"route", Value()}}));
      complete_task(ctx, index, std::move(o), true);
      return;
    }
    case NodeType::kTransform:
      if (!node.transform.store_updates.is_null()) {
        complete_task(ctx, index, NodeOutcome::failure("transform store_updates are not supported: this engine has no key-value store for them"), true);
        return;
      }
      record_instant_step(c, t, node.transform.updates);
      complete_task(ctx, index, NodeOutcome::with_update(node.transform.updates), true);
      return;
    case NodeType::kInterrupt: {
      NodeOutcome o;
      o.kind = NodeOutcome::Kind::kInterrupt;
      record_instant_step(c, t, interrupted_output());
      complete_task(ctx, index, std::move(o), true);
      return;
    }
    case NodeType::kSubgraph:
      start_subgraph(ctx, index);
      return;
    case NodeType::kSend: {
      const Value* items = find_state_path(c.state, node.send.items_key);
      const Node* target = c.compiled->graph->workflow().find_node(node.send.target_node);
      if (target == nullptr) {
        complete_task(ctx, index, NodeOutcome::failure("send target node '" + node.send.target_node + "' does not exist"), true);
        return;
      }
      if (target->type != NodeType::kTask && target->type != NodeType::kAgent && target->type != NodeType::kSubgraph) {
        complete_task(ctx, index, NodeOutcome::failure("send target '" + target->name + "' must be a task, agent or subgraph node"), true);
        return;
      }
      if (items != nullptr && !items->is_array() && !items->is_null()) {
        complete_task(ctx, index, NodeOutcome::failure("send items at '" + node.send.items_key + "' are " +
                                         std::string(type_name(items->type())) + ", not an array"), true);
        return;
      }
      if (items != nullptr && items->is_array() && options_.max_send_items > 0 &&
          items->as_array().size() > options_.max_send_items) {
        complete_task(ctx, index, NodeOutcome::failure("send items at '" + node.send.items_key + "' are " +
                                         std::to_string(items->as_array().size()) + ", over the limit of " +
                                         std::to_string(options_.max_send_items) + " (max_send_items)"), true);
        return;
      }
      if (items != nullptr && items->is_array()) t.items.assign(items->as_array().begin(), items->as_array().end());
      size_t n = t.items.size();
      t.item_results.assign(n, Value());
      t.item_updates.assign(n, {});
      t.item_attempts.assign(n, 0);
      t.item_steps.clear();
      if (n == 0) {
        complete_task(ctx, index, NodeOutcome::with_update(Value::object({{node.send.output_key, Value::array()}})), true);
        return;
      }
      launch_send_items(ctx, index);
      return;
    }
    case NodeType::kTask:
    case NodeType::kAgent:
      break;
  }
  if (!node.function && !node.task.prompt_template) {
    complete_task(ctx, index, NodeOutcome(), true);  // nothing to do (NullBoiler compatible)
    return;
  }
  launch_attempt(ctx, index);
}

// Reads an in-process node's output as a worker reply would be read: its
// updates are the reply's state_updates. Only a non-empty "output" text can
// carry more (control fields inside it), so only then is it read as a reply.
static ReplyEffects function_effects(const NodeOutput& out, std::string* output) {
  ReplyEffects e = effects_of(out);
  const Value* text = e.updates.find("output");
  if (text != nullptr && text->is_string() && !text->as_string().empty()) {
    *output = text->as_string();
    Value envelope = Value::object({{"state_updates", e.updates}});
    if (e.has_goto) {
      Value g = Value::array();
      for (const std::string& n : e.goto_nodes) g.push_back(n);
      envelope.set("goto", std::move(g));
    }
    if (e.done) envelope.set("done", true);
    static const TaskConfig kUnused;  // state_updates decide; the config is not read
    return interpret_reply(*output, envelope, kUnused);
  }
  if (!e.updates.is_object()) e.updates = Value::object();  // changes nothing, as from a worker
  e.has_state_updates = true;
  return e;
}

// Calls an in-process node function: on this engine thread once it drops the
// run lock, or on the pool. `done` runs there, without the run lock.
template <typename Done>
void EngineImpl::call_function(const std::shared_ptr<RunContext>& ctx, const Node& node, WorkerRequest request,
                               Done done) {
  // The function is called where it lives, in the compiled workflow this
  // job keeps alive (copying a std::function may allocate).
  // The job takes only what a NodeCall shows of the request: moving a whole
  // WorkerRequest (a dozen strings) into it and on into the std::function
  // was a sixth of a send item's cost.
  const NodeFunction* fn = &node.function;
  auto job = [compiled = ctx->compiled, fn, name = &node.name, run_id = ctx->run_id_value(),
              state = std::move(request.state), item = std::move(request.item), prompt = std::move(request.prompt),
              attempt = request.attempt, input = ctx->record.input, config = ctx->record.config,
              done = std::move(done)] {
    const std::string& id = run_id.as_string();
    CurrentRun current(id);  // user code runs here: a crash is charged to this run
    std::string output;
    NodeCall call{state, input, config, id, *name, attempt, item.is_null() ? nullptr : &item, prompt};
    auto effects = [&]() -> Result<ReplyEffects> {
      try {
        Result<NodeOutput> out = (*fn)(call);
        if (!out.ok()) return out.status();
        return function_effects(*out, &output);
      } catch (const std::exception& ex) {
        return Status::internal(std::string("node function threw: ") + ex.what());
      } catch (...) {
        return Status::internal("node function threw a non-standard exception");
      }
    }();
    done(std::move(effects), std::move(output));
  };
  // The first in-process call of a superstep runs on this engine thread once
  // it drops the run lock (no thread hop); any others go to the pool so a
  // superstep's nodes still run in parallel. Under Engine::invoke they all run
  // on the invoking thread unless parallel_function_nodes asks otherwise.
  const bool all_inline = ctx->caller_drives && !options_.parallel_function_nodes;
  if (ctx->draining && (all_inline || ctx->inline_work.empty())) {
    ctx->inline_work.push_back(std::move(job));
  } else {
    post(std::move(job));
  }
}

// Sends a worker call through the dispatcher; `done` runs on its threads
// without the run lock.
void EngineImpl::call_worker(const std::shared_ptr<RunContext>& ctx, WorkerRequest request,
                             std::function<void(WorkerReply)> done) {
  std::shared_ptr<Dispatcher> dispatcher = options_.dispatcher;
  if (!dispatcher) {
    WorkerReply reply;
    reply.status = Status::unavailable("no worker available: the engine has no dispatcher");
    post([done = std::move(done), reply = std::move(reply)]() mutable { done(std::move(reply)); });
    return;
  }
  if (ctx->trace) done = ctx->trace->wrap_call(&request, std::move(done));
  // A host dispatcher that throws must not take the thread down, and the
  // call must still end: it fails (once, whatever the dispatcher did).
  struct Once {
    std::atomic<bool> fired{false};
    std::function<void(WorkerReply)> done;
  };
  auto once = std::make_shared<Once>();
  once->done = std::move(done);
  std::function<void()> send = [this, dispatcher, request = std::move(request), once]() mutable {
    auto answer = [this, once](WorkerReply reply) {
      // Answered inside dispatch() on a store's thread, or on an event loop
      // that handling this reply would block (a store that waits to write):
      // handled on an engine thread.
      if (on_store_thread() || (ReplyScope::on_event_loop() && !store_writes_without_waiting_)) {
        post([once, reply = std::move(reply)]() mutable {
          if (!once->fired.exchange(true)) once->done(std::move(reply));
        });
        return;
      }
      if (!once->fired.exchange(true)) once->done(std::move(reply));
    };
    if (!run_guarded("worker dispatcher", [&] { dispatcher->dispatch(request, answer); })) {
      WorkerReply failure;
      failure.status = Status::internal("the worker dispatcher threw an exception");
      answer(std::move(failure));
    }
  };
  // The step's record (and the call id it carries) is stored before the call
  // goes out, so a restart resumes this call instead of sending a new one.
  // Outside Engine::invoke the thread does not wait for that write: the call
  // follows it from the store's callback.
  if (!ctx->caller_drives) {
    flush_then_send(ctx, std::move(send));
    return;
  }
  (void)flush(*ctx);
  if (is_terminal(ctx->record.status)) return;  // the flush failed the run: nothing to call for
  // Never under the run's lock: a dispatcher may answer at once.
  send_call(send);
}

void EngineImpl::launch_attempt(const std::shared_ptr<RunContext>& ctx, size_t index) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& node = *c.compiled->graph->node(t.vertex);
  const std::string& name = node.name;
  const uint64_t token = c.next_token++;
  t.token = token;

  Value state = state_with_meta(c, t.vertex, t.attempt);
  WorkerRequest req;
  req.attempt = t.attempt;
  req.turn = t.turn;
  if (!node.function) {  // what only a dispatcher reads
    req.run_id = c.record.id;
    req.node_name = name;
    req.call_id = make_call_id(t.step_id, t.attempt, t.turn);
    req.step_id = t.step_id;
    req.node_type = std::string(node_type_name(node.type));
    req.worker_tags = node.task.worker_tags;
    req.session_id = "run_" + c.record.id + "_step_" + t.step_id;
  }
  if (t.turn == 1) {
    auto tpl = c.compiled->prompts.find(name);
    if (tpl != c.compiled->prompts.end()) {
      auto prompt = render(c, tpl->second, state, nullptr, t.attempt);
      if (!prompt.ok()) {
        // Past the size limit it would only fail the same way again.
        fail_or_retry(ctx, index, "template render failed: " + prompt.status().message(),
                      prompt.status().code() != StatusCode::kResourceExhausted, -1);
        return;
      }
      req.prompt = std::move(prompt).value();
    }
  } else {
    // Continuation turns render against fresh state: earlier turns' updates applied.
    Value fresh = state;
    (void)apply_updates(&fresh, t.outcome.updates.empty() ? Value::object() : t.outcome.updates.back(),
                        &c.compiled->graph->workflow());
    auto prompt = render(c, c.compiled->continuations.at(name), fresh, nullptr, t.attempt);
    if (!prompt.ok()) {
      fail_or_retry(ctx, index, "continuation render failed: " + prompt.status().message(),
                    prompt.status().code() != StatusCode::kResourceExhausted, -1);
      return;
    }
    req.prompt = std::move(prompt).value();
    state = std::move(fresh);
  }
  req.state = std::move(state);

  // Cache: an identical call (workflow, version, node, prompt, worker choice) reuses its result.
  std::string& cache_key = t.cache_key;
  if (node.task.cache_ttl_ms && t.turn == 1) {
    const Workflow& wf = c.compiled->graph->workflow();
    cache_key = wf.id + "\x1f" + std::to_string(wf.version) + "\x1f" + name + "\x1f" + req.prompt;
    for (const std::string& tag : node.task.worker_tags) cache_key += "\x1f" + tag;
    if (std::optional<NodeOutcome> hit = cache_.get(cache_key, options_.clock->steady_now())) {
      emit(c, event_kind::kCacheHit, Value::object({{"node", name}}));
      complete_task(ctx, index, std::move(*hit), true);
      return;
    }
  }

  StepRecord step;
  step.id = t.step_id;
  step.run_id = c.record.id;
  step.node_name = name;
  step.type = node_type_name(node.type);
  step.status = StepStatus::kRunning;
  step.attempt = t.attempt;
  step.max_attempts = node.task.retry.max_attempts;
  step.superstep = c.version + 1;
  step.input = req.prompt.empty() ? empty_text_object(true) : Value::object({{"prompt", req.prompt}});
  step.created_at_ms = step.started_at_ms = stamp_ms(c);
  // A worker call's record is stored running before the call goes out (a
  // restart resumes the call under it); an in-process call's record is
  // written once, when it ends.
  if (!node.function) write_step(c, step);
  t.step = std::move(step);
  t.has_step_record = true;
  t.in_process = bool(node.function);
  if (options_.node_events) emit(c, event_kind::kStepStarted, Value::object({{"step_id", t.step_id_value()}, {"node", c.compiled->graph->name_value(t.vertex)}, {"attempt", t.attempt}}));

  int64_t timeout_ms = node.task.timeout_ms.value_or(options_.default_timeout_ms);
  if (node.type == NodeType::kAgent && t.turn > 1 && node.task.turn_timeout_ms) {
    timeout_ms = *node.task.turn_timeout_ms;
  }
  timeout_ms = bounded_ms(static_cast<double>(timeout_ms)).count();
  const uint64_t gen = c.generation;
  std::weak_ptr<RunContext> weak = ctx;
  // An in-process function has a deadline only when its node sets one
  // (arming and cancelling a timer per call cost more than a short function).
  const bool deadline = !node.function || node.task.timeout_ms || (node.type == NodeType::kAgent && t.turn > 1 && node.task.turn_timeout_ms);
  if (deadline) req.deadline = options_.clock->steady_now() + std::chrono::milliseconds(timeout_ms);
  // A worker call's deadline is the dispatcher's to keep (it says why: no
  // worker came, the worker did not answer); this timer is the backstop for
  // a dispatcher that does not, a moment later.
  constexpr std::chrono::milliseconds kBackstopGrace(250);
  const SteadyTime fires = node.function ? req.deadline : req.deadline + kBackstopGrace;
  if (deadline) t.timer = options_.clock->call_at(fires, [this, weak, gen, index, token, timeout_ms] {
    auto locked = weak.lock();
    if (!locked) return;
    BatchedRunLock lock(*this, *locked);
    if (locked->generation != gen || index >= locked->tasks.size()) return;
    NodeTask& task = locked->tasks[index];
    if (task.token != token || task.finished) return;
    task.timer = 0;
    cancel_calls(task.step_id);
    on_attempt_done(locked, index, token,
                    Status::deadline_exceeded("worker call timed out after " + std::to_string(timeout_ms) + " ms"),
                    "", "", true, -1);
  });

  if (node.function) {
    // Replies to in-process calls arrive on engine threads, which may go on
    // to run the next node inline.
    call_function(ctx, node, std::move(req),
                  [this, weak, gen, index, token](Result<ReplyEffects> effects, std::string output) {
                    auto locked = weak.lock();
                    if (!locked) return;
                    locked_then_drain(locked, [&] {
                      if (locked->generation != gen) return;
                      on_attempt_done(locked, index, token, std::move(effects), std::move(output), "", true, -1);
                    });
                  });
    return;
  }
  // The node's task config is read where it lives, in the compiled workflow
  // the callback keeps alive.
  const TaskConfig* config = &node.task;
  call_worker(ctx, std::move(req),
              [this, weak, compiled = c.compiled, gen, index, token, config](WorkerReply reply) {
                auto locked = weak.lock();
                if (!locked) return;
                BatchedRunLock lock(*this, *locked, /*async=*/true);
                if (locked->generation != gen) return;
                if (!reply.status.ok()) {
                  on_attempt_done(locked, index, token, reply.status, "", reply.worker_id, reply.retryable,
                                  reply.retry_after_ms);
                  return;
                }
                ReplyEffects effects = interpret_reply(reply.output, reply.envelope, *config);
                on_attempt_done(locked, index, token, std::move(effects), reply.output, reply.worker_id, true, -1);
              });
}

void EngineImpl::on_attempt_done(const std::shared_ptr<RunContext>& ctx, size_t index, uint64_t token,
                                 Result<ReplyEffects> result, std::string output, std::string worker_id,
                                 bool retryable, int64_t retry_after_ms) {
  RunContext& c = *ctx;
  if (index >= c.tasks.size()) return;
  NodeTask& t = c.tasks[index];
  if (t.token != token || t.finished) return;  // a late reply of an abandoned attempt
  if (t.timer) {
    options_.clock->cancel(t.timer);
    t.timer = 0;
  }
  const Node& node = *c.compiled->graph->node(t.vertex);
  if (t.step.id == t.step_id) {
    StepRecord& step = t.step;
    step.status = result.ok() ? StepStatus::kCompleted : StepStatus::kFailed;
    step.ended_at_ms = stamp_ms(c);
    step.worker_id = worker_id;
    if (result.ok()) {
      step.output = output.empty() ? empty_text_object(false) : Value::object({{"output", output}});
    } else {
      step.error = result.status().message();
    }
    write_step(c, std::move(step));  // the attempt's record is final: no copy kept
    t.step = StepRecord();
  }
  if (!result.ok()) {
    emit(c, event_kind::kStepFailed, Value::object({{"step_id", t.step_id}, {"node", node.name}, {"error", result.status().message()}}));
    fail_or_retry(ctx, index, result.status().message(), retryable, retry_after_ms);
    return;
  }
  ReplyEffects effects = std::move(result).value();
  if (options_.node_events) emit(c, event_kind::kStepCompleted, Value::object({{"step_id", t.step_id_value()}, {"node", c.compiled->graph->name_value(t.vertex)}, {"output", output}}));

  // Accumulate this turn.
  Value usage = t.outcome.usage;
  if (!effects.usage.is_null()) {
    usage = Value::object({{"input_tokens", static_cast<long long>(usage["input_tokens"].get_int(0) + effects.usage["input_tokens"].get_int(0))},
                           {"output_tokens", static_cast<long long>(usage["output_tokens"].get_int(0) + effects.usage["output_tokens"].get_int(0))}});
  }
  NodeOutcome o;
  o.updates.push_back(std::move(effects.updates));
  // The reply's ui_messages also join state.__ui_messages (add_messages), as
  // in NullBoiler; and they stream as custom events below.
  if (effects.ui_messages.is_array() && effects.ui_messages.size() > 0) {
    o.updates.push_back(Value::object({{"__ui_messages", effects.ui_messages}}));
  }
  o.has_goto = effects.has_goto;
  o.goto_nodes = std::move(effects.goto_nodes);
  o.usage = std::move(usage);
  Value custom;  // an array once something is in it (most replies stream nothing)
  for (const Value* list : {&effects.ui_messages, &effects.stream_messages}) {
    if (list->is_array()) {
      for (const Value& m : list->as_array()) custom.push_back(m);
    }
  }
  if (custom.size() > 0) o.custom = custom;

  // Agent multi-turn: continue until done, max_turns, or a failed turn.
  bool more_turns = node.type == NodeType::kAgent && node.task.continuation_prompt && !effects.done &&
                    t.turn < node.task.max_turns;
  if (more_turns) {
    t.outcome = std::move(o);
    ++t.turn;
    launch_attempt(ctx, index);
    return;
  }
  if (node.task.cache_ttl_ms && !t.cache_key.empty()) {
    cache_.put(t.cache_key, o, options_.clock->steady_now() + bounded_ms(static_cast<double>(*node.task.cache_ttl_ms)));
  }
  complete_task(ctx, index, std::move(o), true);
}

void EngineImpl::fail_or_retry(const std::shared_ptr<RunContext>& ctx, size_t index, const std::string& error,
                               bool retryable, int64_t retry_after_ms) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& node = *c.compiled->graph->node(t.vertex);
  const RetryPolicy& retry = node.task.retry;
  if (t.turn > 1 && !t.outcome.updates.empty()) {
    // A failed continuation turn ends the loop; the last good turn stands.
    NodeOutcome o = t.outcome;
    complete_task(ctx, index, std::move(o), true);
    return;
  }
  if (!retryable || t.attempt >= retry.max_attempts) {
    std::string msg = error;
    if (t.attempt > 1) msg += " (after " + std::to_string(t.attempt) + " attempts)";
    complete_task(ctx, index, NodeOutcome::failure(msg), true);
    return;
  }
  double delay = static_cast<double>(retry.initial_interval_ms) * std::pow(retry.backoff_factor, t.attempt - 1);
  delay = std::min(delay, static_cast<double>(retry.max_interval_ms)) * jitter_factor(retry.jitter);
  if (retry_after_ms >= 0) delay = static_cast<double>(retry_after_ms);
  ++t.attempt;
  t.turn = 1;
  t.step_id = new_uuid();
  if (c.trace) c.trace->retry_node(index, error, t.attempt, t.step_id);
  const uint64_t token = c.next_token++;
  t.token = token;
  emit(c, event_kind::kStepRetrying, Value::object({{"node", node.name}, {"attempt", t.attempt}, {"delay_ms", static_cast<long long>(bounded_ms(delay).count())}, {"error", error}}));
  std::weak_ptr<RunContext> weak = ctx;
  const uint64_t gen = c.generation;
  t.timer = options_.clock->call_after(bounded_ms(delay), [this, weak, gen, index, token] {
    auto locked = weak.lock();
    if (!locked) return;
    BatchedRunLock lock(*this, *locked);
    if (locked->generation != gen || index >= locked->tasks.size()) return;
    NodeTask& task = locked->tasks[index];
    if (task.token != token || task.finished) return;
    task.timer = 0;
    launch_attempt(locked, index);
  });
}

void EngineImpl::launch_send_items(const std::shared_ptr<RunContext>& ctx, size_t index) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& send = *c.compiled->graph->node(t.vertex);
  const Node& target = *c.compiled->graph->workflow().find_node(send.send.target_node);
  size_t limit = send.send.max_concurrency ? static_cast<size_t>(std::max(1, *send.send.max_concurrency)) : SIZE_MAX;
  const uint64_t gen = c.generation;
  std::weak_ptr<RunContext> weak = ctx;
  auto tpl = c.compiled->prompts.find(target.name);
  const int target_vertex = c.compiled->graph->vertex(target.name);
  std::vector<std::pair<size_t, WorkerRequest>> worker_calls;
  std::vector<ItemChildStart> children;
  while ((!t.retry_items.empty() || t.next_item < t.items.size()) && t.items_in_flight < limit) {
    size_t i;
    if (!t.retry_items.empty()) {
      i = t.retry_items.back();
      t.retry_items.pop_back();
    } else {
      i = t.next_item++;
    }
    ++t.items_in_flight;
    ++t.item_attempts[i];
    if (target.type == NodeType::kSubgraph) {
      if (auto start = start_item_child(ctx, index, i)) children.push_back(std::move(*start));
      continue;
    }
    WorkerRequest req;
    if (!target.function) {  // what only a dispatcher reads
      req.call_id = t.step_id + "#item" + std::to_string(i) + "." + std::to_string(t.item_attempts[i]);
      req.run_id = c.record.id;
      req.node_name = target.name;
      req.node_type = std::string(node_type_name(target.type));
      req.worker_tags = target.task.worker_tags;
    }
    req.attempt = t.item_attempts[i];
    req.item = t.items[i];
    req.state = state_with_meta(c, target_vertex, req.attempt);
    if (tpl != c.compiled->prompts.end()) {
      auto prompt = render(c, tpl->second, req.state, &t.items[i], req.attempt);
      if (!prompt.ok()) {
        // Treated like a failed call (not retried) so on_item_error applies.
        Status failure = Status::invalid_argument("template render failed: " + prompt.status().message());
        post([this, weak, gen, index, i, failure]() {
          auto locked = weak.lock();
          if (!locked) return;
          BatchedRunLock lock(*this, *locked);
          if (locked->generation != gen || index >= locked->tasks.size()) return;
          on_item_reply(locked, index, i, failure, "", false);
        });
        continue;
      }
      req.prompt = std::move(prompt).value();
    }
    if (target.function) {
      // Replies to in-process calls arrive on engine threads, which may go on
      // to run the next item inline.
      call_function(ctx, target, std::move(req),
                    [this, weak, gen, index, i](Result<ReplyEffects> effects, std::string output) {
                      auto locked = weak.lock();
                      if (!locked) return;
                      locked_then_drain(locked, [&] {
                        if (locked->generation != gen || index >= locked->tasks.size()) return;
                        on_item_reply(locked, index, i, std::move(effects), std::move(output), true);
                      });
                    });
      continue;
    }
    record_item_call(c, t, send, target, i);
    worker_calls.emplace_back(i, std::move(req));
  }
  if (!children.empty()) {
    run_item_children(ctx, index, std::move(children));
    return;
  }
  // The records of all these calls go out in one write, with the first call
  // (call_worker stores the batch before it sends); the others follow it.
  for (auto& [i, req] : worker_calls) {
    call_worker(ctx, std::move(req), [this, weak, gen, index, i = i](WorkerReply reply) {
      auto locked = weak.lock();
      if (!locked) return;
      BatchedRunLock lock(*this, *locked);
      if (locked->generation != gen || index >= locked->tasks.size()) return;
      if (!reply.status.ok()) {
        on_item_reply(locked, index, i, reply.status, "", reply.retryable, reply.worker_id);
        return;
      }
      static const TaskConfig kItemConfig;  // item replies: state_updates or the output text
      on_item_reply(locked, index, i, interpret_reply(reply.output, reply.envelope, kItemConfig), reply.output, true,
                    reply.worker_id);
    });
  }
}

// A send item's worker call gets a step record of its own, as in NullBoiler:
// `<send>_<i>`, type task, running until its reply; each retry a new one.
// In-process items (library callables) get none: a fan-out of thousands of
// them would write thousands of records for calls that cannot be resumed.
void EngineImpl::record_item_call(RunContext& c, NodeTask& t, const Node& send, const Node& target, size_t item) {
  StepRecord& step = t.item_steps[item];  // a retry's record replaces the last one's
  step = StepRecord();
  step.id = new_uuid();
  step.run_id = c.record.id;
  step.node_name = send.name + "_" + std::to_string(item);
  step.type = "task";
  step.status = StepStatus::kRunning;
  step.attempt = t.item_attempts[item];
  step.max_attempts = target.task.retry.max_attempts;
  step.superstep = c.version + 1;
  step.item_index = static_cast<int>(item);
  step.parent_step_id = t.step_id;
  step.input = t.items[item];
  step.created_at_ms = step.started_at_ms = stamp_ms(c);
  write_step(c, step);
}

void EngineImpl::finish_item_call(RunContext& c, NodeTask& t, size_t item, const Result<ReplyEffects>& effects,
                                  const std::string& output, const std::string& worker_id) {
  auto found = t.item_steps.find(item);
  if (found == t.item_steps.end()) return;  // no record: an in-process item, a render failure
  StepRecord step = std::move(found->second);
  t.item_steps.erase(found);
  step.status = effects.ok() ? StepStatus::kCompleted : StepStatus::kFailed;
  step.ended_at_ms = stamp_ms(c);
  step.worker_id = worker_id;
  if (effects.ok()) {
    step.output = Value::object({{"output", output}});
  } else {
    step.error = effects.status().message();
  }
  write_step(c, std::move(step));
}

void EngineImpl::on_item_reply(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item,
                               Result<ReplyEffects> effects, std::string output, bool retryable,
                               const std::string& worker_id) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  finish_item_call(c, t, item, effects, output, worker_id);  // also a late reply's, once the send failed
  if (t.finished) return;
  const Node& send = *c.compiled->graph->node(t.vertex);
  const Node& target = *c.compiled->graph->workflow().find_node(send.send.target_node);
  --t.items_in_flight;
  const RetryPolicy& retry = target.task.retry;
  if (!effects.ok() && retryable && t.item_attempts[item] < retry.max_attempts) {
    // Back off, then run this item again (the target's retry policy).
    double delay = static_cast<double>(retry.initial_interval_ms) * std::pow(retry.backoff_factor, t.item_attempts[item] - 1);
    delay = std::min(delay, static_cast<double>(retry.max_interval_ms)) * jitter_factor(retry.jitter);
    ++t.items_in_flight;  // still owed
    std::weak_ptr<RunContext> weak = ctx;
    const uint64_t gen = c.generation;
    options_.clock->call_after(bounded_ms(delay), [this, weak, gen, index, item] {
      auto locked = weak.lock();
      if (!locked) return;
      BatchedRunLock lock(*this, *locked);
      if (locked->generation != gen || index >= locked->tasks.size() || locked->tasks[index].finished) return;
      NodeTask& task = locked->tasks[index];
      --task.items_in_flight;
      task.retry_items.push_back(item);
      launch_send_items(locked, index);
    });
    return;
  }
  if (!effects.ok()) {
    item_finished(ctx, index, item, effects.status(), Value(), Value());
  } else {
    Value updates = effects->has_state_updates && effects->updates.size() > 0 ? std::move(effects->updates) : Value();
    item_finished(ctx, index, item, Status(), Value(std::move(output)), std::move(updates));
  }
}

void EngineImpl::item_finished(const std::shared_ptr<RunContext>& ctx, size_t index, size_t item, const Status& error,
                               Value result, Value updates) {
  RunContext& c = *ctx;
  NodeTask& t = c.tasks[index];
  const Node& send = *c.compiled->graph->node(t.vertex);
  ++t.items_done;
  if (!error.ok()) {
    t.item_results[item] = Value();
    t.item_errors.emplace_back(item, error.message());
  } else {
    if (!updates.is_null()) t.item_updates[item].push_back(std::move(updates));
    t.item_results[item] = std::move(result);
  }
  if (t.items_done < t.items.size()) {
    launch_send_items(ctx, index);
    return;
  }
  // Every item is in: results in item order, item updates in item order.
  if (!t.item_errors.empty() && !send.send.null_on_item_error) {
    std::sort(t.item_errors.begin(), t.item_errors.end());
    complete_task(ctx, index,
                  NodeOutcome::failure("send item " + std::to_string(t.item_errors.front().first) + " failed: " +
                         t.item_errors.front().second),
                  true);
    return;
  }
  NodeOutcome o;
  for (auto& ups : t.item_updates) {
    for (Value& u : ups) o.updates.push_back(std::move(u));
  }
  o.updates.push_back(Value::object({{send.send.output_key, Value(std::move(t.item_results))}}));
  complete_task(ctx, index, std::move(o), true);
}

}  // namespace orch::internal
