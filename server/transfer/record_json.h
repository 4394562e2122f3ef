// SPDX-License-Identifier: MIT
//
// The Store's records as JSON objects, field for field, for `orch export` and
// `orch import`: what one store wrote, another reads back unchanged. Field
// names are the records' member names. Parsing is strict (a record from a
// file is hostile input): a missing id, a wrong type or an unknown status is
// an InvalidArgument naming the field; absent optional fields keep their
// defaults; unknown fields are ignored (a newer export may carry more).
#pragma once

#include "orch/store.h"

namespace orch::server {

Value to_json(const RunRecord& run);
Value to_json(const Checkpoint& checkpoint);
Value to_json(const StepRecord& step);
Value to_json(const EventRecord& event);
Value to_json(const PendingWrite& write);
Value to_json(const WorkflowRecord& workflow);

Result<RunRecord> run_from_json(const Value& v);
Result<Checkpoint> checkpoint_from_json(const Value& v);
Result<StepRecord> step_from_json(const Value& v);
Result<EventRecord> event_from_json(const Value& v);
Result<PendingWrite> pending_write_from_json(const Value& v);
Result<WorkflowRecord> workflow_from_json(const Value& v);

}  // namespace orch::server
