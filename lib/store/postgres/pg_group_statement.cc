// SPDX-License-Identifier: MIT
// The statement of a group commit (see pg_group_statement.h).
#include "store/postgres/pg_group_statement.h"

#include <algorithm>

#include "store/postgres/pg_event_rows.h"
#include "store/postgres/pg_rows.h"

namespace orch::postgres {
namespace {

using checkpoint_codec::kDeltaKind;
using checkpoint_codec::kSnapshotKind;

// The parameters, one array each, one element per run ($1..$30: the last
// four its events' row, pg_event_rows.h), then the steps' ($31: member
// index, then StepArrays').
constexpr int kRunArrays = 30;

const std::string& group_sql(bool announce) {
  auto build = [](bool with_notify) {
    // The runs' rows are looked up by id (the = ANY lets the planner use the
    // index, in id order: the order their locks are then taken in is the
    // same in every instance, and two groups sharing runs, in a takeover,
    // do not deadlock; were one to, it fails and its runs are written one
    // by one).
    std::string out =
        "WITH run AS (UPDATE runs r SET status = m.status, error = m.error, updated_at_ms = m.updated_at_ms, "
        "started_at_ms = m.started_at_ms, ended_at_ms = m.ended_at_ms, input_tokens = m.input_tokens, "
        "output_tokens = m.output_tokens, checkpoint_count = m.checkpoint_count, state = m.state, "
        "recoveries = m.recoveries, latest_checkpoint_id = m.cp_id, last_event_seq = r.last_event_seq + m.n_events "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], "
        "$8::bigint[], $9::bigint[], $10::text[], $11::bigint[], $12::text[], $13::bigint[], $14::text[], "
        "$15::text[], $16::bigint[], $17::bigint[], $18::text[], $19::bigint[], $20::bigint[], $21::bigint[], "
        "$22::text[], $23::text[], $24::text[], $25::bigint[], $26::bigint[], $27::text[], $28::text[], "
        "$29::bigint[], $30::text[]) WITH ORDINALITY AS m(id, status, error, updated_at_ms, started_at_ms, "
        "ended_at_ms, input_tokens, output_tokens, checkpoint_count, state, recoveries, cp_id, cp_seq, "
        "cp_parent_id, cp_step_id, cp_version, cp_created_at_ms, cp_kind, cp_base_seq, cp_chain_bytes, "
        "cp_base_bytes, cp_body, expected, lease_owner, lease_epoch, n_events, ev_kind, ev_data, ev_created_at_ms, "
        "ev_state_checkpoint_id, member_index) "
        // Re-read at the row's lock (READ COMMITTED re-checks an UPDATE's
        // quals against the row's newest version): a stale writer or a chain
        // that moved on matches no row, and its run writes nothing.
        "WHERE r.id = ANY($1::text[]) AND r.id = m.id AND r.latest_checkpoint_id = m.expected AND "
        "(m.lease_epoch = 0 OR (r.lease_owner = m.lease_owner AND r.lease_epoch = m.lease_epoch)) "
        "RETURNING r.pk, r.id, m.member_index, r.last_event_seq, m.n_events, m.ev_kind, m.ev_data, "
        "m.ev_created_at_ms, m.ev_state_checkpoint_id, m.cp_id, m.cp_seq, m.cp_parent_id, m.cp_step_id, "
        "m.cp_version, m.cp_created_at_ms, m.cp_kind, m.cp_base_seq, m.cp_chain_bytes, m.cp_base_bytes, m.cp_body), "
        "dropped AS (DELETE FROM pending_writes WHERE run_pk IN (SELECT pk FROM run)), "
        "checkpoint AS (INSERT INTO checkpoints (id, run_pk, run_id, seq, parent_id, step_id, version, "
        "created_at_ms, kind, base_seq, chain_bytes, base_bytes, body) SELECT cp_id, pk, id, cp_seq, cp_parent_id, "
        "cp_step_id, cp_version, cp_created_at_ms, cp_kind, cp_base_seq, cp_chain_bytes, cp_base_bytes, cp_body "
        "FROM run), " +
        steps_cte(kRunArrays + 1, /*by_member=*/true) +
        // Each run's events are one row (pg_event_rows.h).
        " INSERT INTO events (run_pk, run_id, last_seq, event_count, kind, data, created_at_ms, "
        "state_checkpoint_id) SELECT pk, id, last_event_seq, n_events, ev_kind, ev_data, ev_created_at_ms, "
        "ev_state_checkpoint_id FROM run ";
    // One notification for the runs written, "<schema> E <length>:<run
    // id>..." (pg_change_watch.h), sent at commit, instead of one per run:
    // each costs the server, and every listening instance, its delivery. A
    // payload holds up to 8000 bytes: the runs go in as many as they need,
    // each under 7000 bytes (parts start every 3500 bytes of entries, which
    // are under 3500 bytes each; a longer id is not announced, and its
    // readers look again within 500 ms). The WHERE runs it, once, when the
    // statement writes a run.
    if (with_notify) {
      out += "WHERE (SELECT count(*) FROM (SELECT pg_notify('orch_changes', current_schema() || ' E ' || "
             "string_agg(octet_length(id) || ':' || id, '' ORDER BY id)) FROM (SELECT id, sum(octet_length(id) + "
             "8) OVER (ORDER BY id) / 3500 AS part FROM run WHERE octet_length(id) < 3490) announced GROUP BY part) "
             "sent) >= 0 ";
    }
    return out + "RETURNING run_id, last_seq, event_count";
  };
  static const std::string announced = build(true);
  static const std::string silent = build(false);
  return announce ? announced : silent;
}

}  // namespace

Command group_checkpoint_commit(const std::vector<GroupCheckpoint>& parts, bool announce) {
  // Columns of the runs' arrays, by kind.
  std::vector<std::string> ids, statuses, errors, states, cp_ids, cp_parents, cp_steps, cp_kinds, cp_bodies, expected,
      owners;
  std::vector<int64_t> updated, started, ended, input_tokens, output_tokens, checkpoint_counts, recoveries, cp_seqs,
      cp_versions, cp_created, cp_base_seqs, cp_chain_bytes, cp_base_bytes, epochs, event_counts;
  std::vector<std::string> event_kinds, event_data, event_state_refs;
  std::vector<int64_t> event_created, step_members;
  StepArrays steps;
  for (size_t i = 0; i < parts.size(); ++i) {
    const GroupCheckpoint& part = parts[i];
    const RunRecord& run = *part.run;
    const Checkpoint& cp = *part.checkpoint;
    const checkpoint_codec::EncodedCheckpoint& row = *part.row;
    ids.push_back(run.id);
    statuses.emplace_back(run_status_name(run.status));
    errors.push_back(run.error);
    updated.push_back(run.updated_at_ms);
    started.push_back(run.started_at_ms);
    ended.push_back(run.ended_at_ms);
    input_tokens.push_back(run.input_tokens);
    output_tokens.push_back(run.output_tokens);
    checkpoint_counts.push_back(run.checkpoint_count);
    // As add_run_progress: '' when the run's state is its checkpoint's.
    const bool state_is_checkpoints = run.state.shares_storage_with(cp.state) || run.state == cp.state;
    states.push_back(state_is_checkpoints ? std::string() : run.state.to_json());
    recoveries.push_back(run.recoveries);
    cp_ids.push_back(cp.id);
    cp_seqs.push_back(row.link.seq);
    cp_parents.push_back(cp.parent_id);
    cp_steps.push_back(cp.step_id);
    cp_versions.push_back(cp.version);
    cp_created.push_back(cp.created_at_ms);
    cp_kinds.emplace_back(row.snapshot ? kSnapshotKind : kDeltaKind);
    cp_base_seqs.push_back(row.link.base_seq);
    cp_chain_bytes.push_back(row.link.chain_bytes);
    cp_base_bytes.push_back(row.link.base_bytes);
    cp_bodies.push_back(row.body);
    expected.push_back(part.expected_checkpoint);
    owners.push_back(part.lease_owner);
    epochs.push_back(part.lease_epoch);
    EventRow events = encode_event_row(*part.events, &cp);
    event_counts.push_back(events.count);
    event_kinds.push_back(std::move(events.kind));
    event_data.push_back(std::move(events.data));
    event_created.push_back(events.created_at_ms);
    event_state_refs.push_back(std::move(events.state_checkpoint_id));
    const int64_t member = static_cast<int64_t>(i) + 1;  // WITH ORDINALITY counts from 1
    if (part.steps != nullptr) {
      for (const StepRecord* step : *part.steps) {
        step_members.push_back(member);
        steps.add(*step);
      }
    }
  }
  Params p;
  p.text_array(ids).text_array(statuses).text_array(errors).integer_array(updated).integer_array(started);
  p.integer_array(ended).integer_array(input_tokens).integer_array(output_tokens).integer_array(checkpoint_counts);
  p.text_array(states).integer_array(recoveries);
  p.text_array(cp_ids).integer_array(cp_seqs).text_array(cp_parents).text_array(cp_steps).integer_array(cp_versions);
  p.integer_array(cp_created).text_array(cp_kinds).integer_array(cp_base_seqs).integer_array(cp_chain_bytes);
  p.integer_array(cp_base_bytes).text_array(cp_bodies);
  p.text_array(expected).text_array(owners).integer_array(epochs).integer_array(event_counts);
  p.text_array(event_kinds).text_array(event_data).integer_array(event_created).text_array(event_state_refs);
  p.integer_array(step_members);
  steps.bind(p);
  return {group_sql(announce), std::move(p)};
}

Command earlier_checkpoints_insert(const std::vector<EarlierCheckpoint>& rows) {
  static const std::string sql =
      "INSERT INTO checkpoints (id, run_pk, run_id, seq, parent_id, step_id, version, created_at_ms, kind, "
      "base_seq, chain_bytes, base_bytes, body) SELECT e.id, r.pk, r.id, e.seq, e.parent_id, e.step_id, e.version, "
      "e.created_at_ms, e.kind, e.base_seq, e.chain_bytes, e.base_bytes, e.body FROM unnest($1::text[], $2::text[], "
      "$3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], "
      "$11::bigint[], $12::bigint[], $13::text[]) AS e(run_id, later_id, id, seq, parent_id, step_id, version, "
      "created_at_ms, kind, base_seq, chain_bytes, base_bytes, body) JOIN runs r ON r.id = e.run_id AND "
      "r.latest_checkpoint_id = e.later_id WHERE r.id = ANY($1::text[])";
  std::vector<std::string> run_ids, later_ids, ids, parents, step_ids, kinds, bodies;
  std::vector<int64_t> seqs, versions, created, base_seqs, chain_bytes, base_bytes;
  for (const EarlierCheckpoint& e : rows) {
    run_ids.push_back(e.run->id);
    later_ids.push_back(e.later_id);
    ids.push_back(e.checkpoint->id);
    seqs.push_back(e.row->link.seq);
    parents.push_back(e.checkpoint->parent_id);
    step_ids.push_back(e.checkpoint->step_id);
    versions.push_back(e.checkpoint->version);
    created.push_back(e.checkpoint->created_at_ms);
    kinds.emplace_back(e.row->snapshot ? kSnapshotKind : kDeltaKind);
    base_seqs.push_back(e.row->link.base_seq);
    chain_bytes.push_back(e.row->link.chain_bytes);
    base_bytes.push_back(e.row->link.base_bytes);
    bodies.push_back(e.row->body);
  }
  Params p;
  p.text_array(run_ids).text_array(later_ids).text_array(ids).integer_array(seqs).text_array(parents);
  p.text_array(step_ids).integer_array(versions).integer_array(created).text_array(kinds).integer_array(base_seqs);
  p.integer_array(chain_bytes).integer_array(base_bytes).text_array(bodies);
  return {sql, std::move(p)};
}

Result<std::unordered_map<std::string, std::vector<int64_t>>> group_event_seqs(const Rows& rows) {
  std::unordered_map<std::string, std::vector<int64_t>> out;
  // A run's events are one row: its seqs are that row's.
  for (int i = 0; i < rows.count(); ++i) {
    ORCH_ASSIGN_OR_RETURN(int64_t last, rows.integer(i, 1));
    ORCH_ASSIGN_OR_RETURN(int64_t count, rows.integer(i, 2));
    if (count < 1) return Status::internal("write_batch: an events row of run " + rows.string(i, 0) + " holds none");
    std::vector<int64_t>& seqs = out[rows.string(i, 0)];
    for (int64_t seq = last - count + 1; seq <= last; ++seq) seqs.push_back(seq);
  }
  // A run is in a statement once; were it not, RETURNING has no order.
  for (auto& [run, seqs] : out) std::sort(seqs.begin(), seqs.end());
  return out;
}

}  // namespace orch::postgres
