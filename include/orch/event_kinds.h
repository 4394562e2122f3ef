// SPDX-License-Identifier: MIT
//
// The kinds of the events the engine writes to a run's event log
// (EventRecord::kind, read back through Store::list_events and delivered to
// EventListeners). The names are NullBoiler's: clients match on them, so they
// never change. Stream modes group them: "values" (kValues), "updates"
// (kUpdates and the server's agent events), "tasks" (kTaskStart, kTaskResult),
// "custom" (kCustom), and "debug" (every kind).
//
// Plain constants; nothing to own or lock.
#pragma once

namespace orch::event_kind {

// Run lifecycle.
inline constexpr char kRunStarted[] = "run.started";
inline constexpr char kRunCompleted[] = "run.completed";
inline constexpr char kRunFailed[] = "run.failed";
inline constexpr char kRunCancelled[] = "run.cancelled";
inline constexpr char kRunInterrupted[] = "run.interrupted";
inline constexpr char kRunResumed[] = "run.resumed";
inline constexpr char kRunRetried[] = "run.retried";
inline constexpr char kRunReplayed[] = "run.replayed";
inline constexpr char kRunForked[] = "run.forked";
inline constexpr char kCheckpointCreated[] = "checkpoint.created";
inline constexpr char kStateInjected[] = "state.injected";

// One node execution (a step).
inline constexpr char kStepStarted[] = "step.started";
inline constexpr char kStepCompleted[] = "step.completed";
inline constexpr char kStepFailed[] = "step.failed";
inline constexpr char kStepRetrying[] = "step.retrying";
inline constexpr char kCacheHit[] = "cache.hit";  // a node's result came from its cache

// The stream events of NullBoiler's SSE modes.
inline constexpr char kValues[] = "values";          // the whole state after a superstep
inline constexpr char kUpdates[] = "updates";        // one node's state updates
inline constexpr char kTaskStart[] = "task_start";
inline constexpr char kTaskResult[] = "task_result";
inline constexpr char kCustom[] = "custom";          // what a worker streamed
inline constexpr char kAgentEvent[] = "agent_event"; // an agent's progress (orch serve's pull mode)

}  // namespace orch::event_kind
