// SPDX-License-Identifier: MIT
// Events rows of the PostgreSQL store (see pg_event_rows.h).
#include "store/postgres/pg_event_rows.h"

#include <algorithm>
#include <optional>

#include "store/store_batch.h"

namespace orch::postgres {
namespace {

// Wrapping arithmetic: a damaged row's time reads back wrong, never as
// undefined behaviour.
int64_t wrapping_add(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t wrapping_sub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}

// `event`'s data as stored beside `checkpoint`: without the state when it
// ends with the checkpoint's very state (*without_state says so).
const Value& stored_data(const EventRecord& event, const Checkpoint* checkpoint, std::optional<Value>* rest,
                         bool* without_state) {
  if (checkpoint != nullptr) *rest = internal::without_checkpoint_state(event.data, checkpoint->state);
  *without_state = rest->has_value();
  return *without_state ? **rest : event.data;
}

}  // namespace

EventRow encode_event_row(const std::vector<EventRecord>& events, const Checkpoint* checkpoint) {
  EventRow row;
  row.count = static_cast<int64_t>(events.size());
  if (events.empty()) return row;
  row.created_at_ms = events.front().created_at_ms;
  bool any_without_state = false;
  if (events.size() == 1) {
    std::optional<Value> rest;
    row.kind = events.front().kind;
    row.data = stored_data(events.front(), checkpoint, &rest, &any_without_state).to_json();
  } else {
    row.data.push_back('[');
    for (size_t i = 0; i < events.size(); ++i) {
      const EventRecord& event = events[i];
      std::optional<Value> rest;
      bool without_state = false;
      const Value& data = stored_data(event, checkpoint, &rest, &without_state);
      any_without_state = any_without_state || without_state;
      row.data += i > 0 ? ",[" : "[";
      Value(event.kind).write_json(&row.data);
      row.data.push_back(',');
      data.write_json(&row.data);
      const int64_t ms = wrapping_sub(event.created_at_ms, row.created_at_ms);
      if (ms != 0 || without_state) row.data += "," + std::to_string(ms);
      if (without_state) row.data += ",1";
      row.data.push_back(']');
    }
    row.data.push_back(']');
  }
  if (any_without_state) row.state_checkpoint_id = checkpoint->id;
  return row;
}

const char* const kEventSelectList = "last_seq, event_count, kind, data, created_at_ms, state_checkpoint_id";

namespace {

// The columns of kEventSelectList, from `first`.
enum EventColumn { kLastSeq = 0, kCount, kKind, kData, kCreated, kStateRef };

}  // namespace

Status read_event_row(const Rows& rows, int row, int first, const std::string& run_id, std::vector<StoredEvent>* out) {
  auto column = [first](EventColumn c) { return first + static_cast<int>(c); };
  Result<int64_t> last_seq = rows.integer(row, column(kLastSeq));
  Result<int64_t> count = rows.integer(row, column(kCount));
  Result<int64_t> created = rows.integer(row, column(kCreated));
  if (!last_seq.ok() || !count.ok() || !created.ok()) {
    const Status& bad = !last_seq.ok() ? last_seq.status() : !count.ok() ? count.status() : created.status();
    return Status::internal("an events row of run " + run_id + ": " + bad.message());
  }
  const std::string state_ref = rows.string(row, column(kStateRef));
  const int64_t first_seq = wrapping_sub(*last_seq, *count - 1);
  const std::string what = *count == 1 ? "event " + std::to_string(*last_seq) + " of run " + run_id
                                       : "events " + std::to_string(first_seq) + " to " + std::to_string(*last_seq) +
                                             " of run " + run_id;
  Result<Value> data = parse_json(rows.text(row, column(kData)));
  if (!data.ok()) return Status::internal(what + ": malformed JSON: " + data.status().message());
  if (*count == 1) {
    StoredEvent stored;
    stored.event.run_id = run_id;
    stored.event.seq = *last_seq;
    stored.event.kind = rows.string(row, column(kKind));
    stored.event.data = std::move(*data);
    stored.event.created_at_ms = *created;
    stored.without_state = !state_ref.empty();
    if (stored.without_state) stored.state_checkpoint_id = state_ref;
    out->push_back(std::move(stored));
    return Status();
  }
  if (*count < 2 || !data->is_array() || data->size() != static_cast<size_t>(*count)) {
    return Status::internal(what + ": not a batch of " + std::to_string(*count) + " events");
  }
  const Array& items = data->as_array();
  for (size_t i = 0; i < items.size(); ++i) {
    const Value& item = items[i];
    auto bad = [&](const char* why) {
      return Status::internal(what + ": event " + std::to_string(first_seq + static_cast<int64_t>(i)) + ": " + why);
    };
    if (!item.is_array() || item.size() < 2 || item.size() > 4 || !item.as_array()[0].is_string()) {
      return bad("not [kind, data, ...]");
    }
    const Array& fields = item.as_array();
    StoredEvent stored;
    stored.event.run_id = run_id;
    stored.event.seq = first_seq + static_cast<int64_t>(i);
    stored.event.kind = fields[0].as_string();
    stored.event.data = fields[1];
    int64_t ms = 0;
    if (fields.size() >= 3) {
      if (!fields[2].is_int()) return bad("its time is not an integer");
      ms = fields[2].as_int();
    }
    stored.event.created_at_ms = wrapping_add(*created, ms);
    if (fields.size() == 4) {
      if (!fields[3].is_int() || fields[3].as_int() != 1 || state_ref.empty()) return bad("an unknown form");
      stored.without_state = true;
      stored.state_checkpoint_id = state_ref;
    }
    out->push_back(std::move(stored));
  }
  return Status();
}

Result<std::vector<int64_t>> covered_seqs(const Rows& rows, int first) {
  std::vector<int64_t> seqs;
  for (int i = 0; i < rows.count(); ++i) {
    ORCH_ASSIGN_OR_RETURN(int64_t last, rows.integer(i, first));
    ORCH_ASSIGN_OR_RETURN(int64_t count, rows.integer(i, first + 1));
    if (count < 1) {
      return Status::internal("an events row ending at seq " + std::to_string(last) + " holds " +
                              std::to_string(count) + " events");
    }
    for (int64_t seq = last - count + 1; seq <= last; ++seq) seqs.push_back(seq);
  }
  // RETURNING has no order.
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

}  // namespace orch::postgres
