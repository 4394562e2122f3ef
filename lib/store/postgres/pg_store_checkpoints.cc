// SPDX-License-Identifier: MIT
// Checkpoints of the PostgreSQL store: read back, truncate, and the cache of
// each run's latest document. Commits go through the batch path
// (pg_store_batches.cc). The row format is store/checkpoint_codec.h's.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "store/postgres/pg_event_rows.h"
#include "store/postgres/pg_rows.h"
#include "store/postgres/pg_store_impl.h"

namespace orch::postgres {

using checkpoint_codec::DocumentBuilder;
using checkpoint_codec::unpack_document;

namespace {

// The header columns a Checkpoint needs besides its document.
constexpr const char* kHeaderColumns = "id, run_id, seq, parent_id, step_id, version, created_at_ms";
constexpr int kHeaderCount = 7;

struct Header {
  Checkpoint checkpoint;  // without state, metadata and completed nodes
  int64_t seq = 0;
};

Result<Header> read_header(const Rows& rows, int row) {
  Header h;
  h.checkpoint.id = rows.string(row, 0);
  h.checkpoint.run_id = rows.string(row, 1);
  ORCH_ASSIGN_OR_RETURN(h.seq, rows.integer(row, 2));
  h.checkpoint.parent_id = rows.string(row, 3);
  h.checkpoint.step_id = rows.string(row, 4);
  ORCH_ASSIGN_OR_RETURN(h.checkpoint.version, rows.integer(row, 5));
  ORCH_ASSIGN_OR_RETURN(h.checkpoint.created_at_ms, rows.integer(row, 6));
  return h;
}

}  // namespace

const char* const kLatestLinkSql =
    "SELECT id, seq, base_seq, chain_bytes, base_bytes FROM checkpoints "
    "WHERE run_pk = (SELECT pk FROM runs WHERE id = $1) ORDER BY seq DESC LIMIT 1";

Result<ChainLink> read_link(const Rows& rows, int row) {
  ChainLink link;
  link.id = rows.string(row, 0);
  ORCH_ASSIGN_OR_RETURN(link.seq, rows.integer(row, 1));
  ORCH_ASSIGN_OR_RETURN(link.base_seq, rows.integer(row, 2));
  ORCH_ASSIGN_OR_RETURN(link.chain_bytes, rows.integer(row, 3));
  ORCH_ASSIGN_OR_RETURN(link.base_bytes, rows.integer(row, 4));
  return link;
}

bool same_link(const ChainLink& a, const ChainLink& b) {
  return a.id == b.id && a.seq == b.seq && a.base_seq == b.base_seq && a.chain_bytes == b.chain_bytes &&
         a.base_bytes == b.base_bytes;
}

// ---- Reading ------------------------------------------------------------------------

Result<std::optional<ChainLink>> PostgresStore::latest_link(Connection& conn, const std::string& run_id) {
  ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("reading the latest checkpoint", kLatestLinkSql, Params().text(run_id)));
  if (rows.count() == 0) return std::optional<ChainLink>();
  ORCH_ASSIGN_OR_RETURN(ChainLink link, read_link(rows, 0));
  return std::optional<ChainLink>(std::move(link));
}

Result<Value> PostgresStore::load_document(Connection& conn, const std::string& run_id,
                                           const std::string& checkpoint_id) {
  // The checkpoint's row and the chain it ends, in one statement: one
  // snapshot of the database, whatever other connections truncate meanwhile.
  static const std::string kSelect =
      "SELECT c.seq, c.kind, c.body, h.base_seq, h.seq FROM checkpoints h JOIN checkpoints c "
      "ON c.run_pk = h.run_pk AND c.seq BETWEEN h.base_seq AND h.seq WHERE h.id = $1 ORDER BY c.seq";
  ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("reading checkpoint " + checkpoint_id, kSelect,
                                             Params().text(checkpoint_id)));
  if (rows.count() == 0) return Status::not_found("checkpoint " + checkpoint_id + " not found");
  ORCH_ASSIGN_OR_RETURN(int64_t base_seq, rows.integer(0, 3));
  ORCH_ASSIGN_OR_RETURN(int64_t seq, rows.integer(0, 4));
  DocumentBuilder builder(run_id);
  int64_t first = -1;
  int64_t last = -1;
  for (int i = 0; i < rows.count(); ++i) {
    ORCH_ASSIGN_OR_RETURN(last, rows.integer(i, 0));
    if (first < 0) first = last;
    ORCH_RETURN_IF_ERROR(builder.add(last, rows.text(i, 1), rows.text(i, 2)));
  }
  if (first != base_seq || last != seq) {
    return Status::internal("checkpoint data of run " + run_id + " is corrupt: the chain " +
                            std::to_string(base_seq) + ".." + std::to_string(seq) + " is incomplete");
  }
  return builder.document();
}

Result<Checkpoint> PostgresStore::read_checkpoint(Connection& conn, const std::string& sql, const std::string& key) {
  ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("reading a checkpoint", sql, Params().text(key)));
  if (rows.count() == 0) return Status::not_found(key);
  ORCH_ASSIGN_OR_RETURN(Header header, read_header(rows, 0));
  Checkpoint& cp = header.checkpoint;
  CachedDocument cached;
  Value document;
  if (cached_document(cp.run_id, &cached) && cached.link.id == cp.id && cached.link.seq == header.seq) {
    document = std::move(cached.document);
  } else {
    ORCH_ASSIGN_OR_RETURN(document, load_document(conn, cp.run_id, cp.id));
  }
  ORCH_RETURN_IF_ERROR(unpack_document(document, &cp));
  return std::move(cp);
}

Result<Value> PostgresStore::checkpoint_state(Connection& conn, const std::string& run_id,
                                             const std::string& checkpoint_id) {
  CachedDocument cached;
  if (cached_document(run_id, &cached) && cached.link.id == checkpoint_id) return cached.document["state"];
  Result<Value> document = load_document(conn, run_id, checkpoint_id);
  if (!document.ok()) {
    return Status::internal("an event of run " + run_id + " names checkpoint " + checkpoint_id +
                            " for its state: " + document.status().message());
  }
  return (*document)["state"];
}

Status PostgresStore::restore_event_states(Connection& conn, const std::string& run_id, int64_t run_pk,
                                           int64_t version) {
  const std::string what = "truncate_checkpoints";
  static const std::string kSelect = std::string("SELECT ") + kEventSelectList +
                                     " FROM events WHERE run_pk = $1 AND state_checkpoint_id IN (SELECT id FROM "
                                     "checkpoints WHERE run_pk = $1 AND version > $2)";
  ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec(what, kSelect, Params().integer(run_pk).integer(version)));
  // Each row is written again, whole: its events (all of a batch row's)
  // with their states back in their data.
  for (int i = 0; i < rows.count(); ++i) {
    std::vector<StoredEvent> stored;
    ORCH_RETURN_IF_ERROR(read_event_row(rows, i, 0, run_id, &stored));
    std::vector<EventRecord> events;
    events.reserve(stored.size());
    for (StoredEvent& one : stored) {
      if (one.without_state) {
        ORCH_ASSIGN_OR_RETURN(Value state, checkpoint_state(conn, run_id, one.state_checkpoint_id));
        one.event.data.set("state", std::move(state));
      }
      events.push_back(std::move(one.event));
    }
    if (events.empty()) continue;
    EventRow whole = encode_event_row(events, nullptr);
    ORCH_RETURN_IF_ERROR(conn.exec(what,
                                   "UPDATE events SET kind = $3, data = $4, created_at_ms = $5, "
                                   "state_checkpoint_id = '' WHERE run_pk = $1 AND last_seq = $2",
                                   Params()
                                       .integer(run_pk)
                                       .integer(events.back().seq)
                                       .text(whole.kind)
                                       .text(whole.data)
                                       .integer(whole.created_at_ms))
                             .status());
  }
  return Status();
}

Status PostgresStore::resolve_state(Connection& conn, RunRecord* run) {
  if (!run->state.is_null()) return Status();
  // A truncate between reading the link and the chain can remove the
  // checkpoint: read the link again then.
  for (int attempt = 0; attempt < 3; ++attempt) {
    ORCH_ASSIGN_OR_RETURN(std::optional<ChainLink> last, latest_link(conn, run->id));
    if (!last) return Status();  // no checkpoint: the state stays null
    CachedDocument cached;
    if (cached_document(run->id, &cached) && same_link(*last, cached.link)) {
      run->state = cached.document["state"];
      return Status();
    }
    Result<Value> document = load_document(conn, run->id, last->id);
    if (document.ok()) {
      run->state = (*document)["state"];
      return Status();
    }
    if (document.status().code() != StatusCode::kNotFound) return document.status();
  }
  return Status::unavailable("get_run: the checkpoints of run " + run->id + " kept changing while being read");
}

Result<Checkpoint> PostgresStore::get_checkpoint(const std::string& checkpoint_id) {
  return with_connection("get_checkpoint", [&](Connection& conn) -> Result<Checkpoint> {
    static const std::string kSelect = std::string("SELECT ") + kHeaderColumns + " FROM checkpoints WHERE id = $1";
    Result<Checkpoint> cp = read_checkpoint(conn, kSelect, checkpoint_id);
    if (!cp.ok() && cp.status().code() == StatusCode::kNotFound) {
      return Status::not_found("checkpoint " + checkpoint_id + " not found");
    }
    return cp;
  });
}

Result<Checkpoint> PostgresStore::latest_checkpoint(const std::string& run_id) {
  return with_connection("latest_checkpoint", [&](Connection& conn) -> Result<Checkpoint> {
    static const std::string kSelect = std::string("SELECT ") + kHeaderColumns +
                                       " FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = $1) "
                                       "ORDER BY seq DESC LIMIT 1";
    Result<Checkpoint> cp = read_checkpoint(conn, kSelect, run_id);
    if (!cp.ok() && cp.status().code() == StatusCode::kNotFound) {
      ORCH_RETURN_IF_ERROR(check_run_exists(conn, run_id));
      return Status::not_found("run " + run_id + " has no checkpoint");
    }
    return cp;
  });
}

Result<std::vector<Checkpoint>> PostgresStore::list_checkpoints(const std::string& run_id) {
  return with_connection("list_checkpoints", [&](Connection& conn) -> Result<std::vector<Checkpoint>> {
    static const std::string kSelect = std::string("SELECT ") + kHeaderColumns +
                                       ", kind, body FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = "
                                       "$1) ORDER BY seq";
    ORCH_ASSIGN_OR_RETURN(Rows rows, conn.exec("list_checkpoints", kSelect, Params().text(run_id)));
    if (rows.count() == 0) ORCH_RETURN_IF_ERROR(check_run_exists(conn, run_id));
    // One pass: each row's document is the previous one with its delta
    // applied; the checkpoints share whatever did not change.
    DocumentBuilder builder(run_id);
    std::vector<Checkpoint> out;
    out.reserve(static_cast<size_t>(rows.count()));
    for (int i = 0; i < rows.count(); ++i) {
      ORCH_ASSIGN_OR_RETURN(Header header, read_header(rows, i));
      ORCH_RETURN_IF_ERROR(builder.add(header.seq, rows.text(i, kHeaderCount), rows.text(i, kHeaderCount + 1)));
      ORCH_RETURN_IF_ERROR(unpack_document(builder.document(), &header.checkpoint));
      out.push_back(std::move(header.checkpoint));
    }
    return out;
  });
}

// ---- Truncating ---------------------------------------------------------------------

Status PostgresStore::truncate_checkpoints(const std::string& run_id, int64_t version) {
  Status status = with_connection("truncate_checkpoints", [&](Connection& conn) -> Status {
    const std::string what = "truncate_checkpoints";
    ORCH_RETURN_IF_ERROR(conn.exec_script(what, "BEGIN"));
    ORCH_ASSIGN_OR_RETURN(Rows locked, conn.exec(what, "SELECT orch_lock_run($1)", Params().text(run_id)));
    ORCH_ASSIGN_OR_RETURN(int64_t pk, locked.integer(0, 0));
    ORCH_ASSIGN_OR_RETURN(Rows first, conn.exec(what, "SELECT MIN(seq) FROM checkpoints WHERE run_pk = $1 AND version > $2",
                                                Params().integer(pk).integer(version)));
    if (!first.is_null(0, 0)) {
      ORCH_ASSIGN_OR_RETURN(int64_t first_dropped, first.integer(0, 0));
      ORCH_RETURN_IF_ERROR(restore_event_states(conn, run_id, pk, version));
      // Versions increase along a run, so normally every row from the first
      // dropped one on goes and the surviving chains are intact. Should a
      // later row survive (versions out of order), its chain would run
      // through deleted rows: it is rewritten as a snapshot first.
      ORCH_ASSIGN_OR_RETURN(Rows survivors,
                            conn.exec(what, "SELECT id, seq FROM checkpoints WHERE run_pk = $1 AND seq > $2 AND version <= $3",
                                      Params().integer(pk).integer(first_dropped).integer(version)));
      std::vector<std::pair<std::string, std::string>> rewrites;  // id, document
      for (int i = 0; i < survivors.count(); ++i) {
        ORCH_ASSIGN_OR_RETURN(Value document, load_document(conn, run_id, survivors.string(i, 0)));
        rewrites.emplace_back(survivors.string(i, 0), document.to_json());
      }
      ORCH_RETURN_IF_ERROR(conn.exec(what, "DELETE FROM checkpoints WHERE run_pk = $1 AND version > $2",
                                     Params().integer(pk).integer(version))
                               .status());
      for (const auto& [id, body] : rewrites) {
        ORCH_RETURN_IF_ERROR(conn.exec(what,
                                       "UPDATE checkpoints SET kind = 'snapshot', base_seq = seq, chain_bytes = 0, "
                                       "base_bytes = $2, body = $3 WHERE id = $1",
                                       Params().text(id).integer(static_cast<int64_t>(body.size())).text(body))
                                 .status());
      }
      // The run row names its latest checkpoint (schema 5): the group
      // commit's check reads it.
      ORCH_RETURN_IF_ERROR(conn.exec(what,
                                     "UPDATE runs SET latest_checkpoint_id = COALESCE((SELECT id FROM checkpoints "
                                     "WHERE run_pk = $1 ORDER BY seq DESC LIMIT 1), '') WHERE pk = $1",
                                     Params().integer(pk))
                               .status());
    }
    // As in the in-memory store: results recorded for supersteps that are
    // being replayed no longer apply.
    ORCH_RETURN_IF_ERROR(
        conn.exec(what, "DELETE FROM pending_writes WHERE run_pk = $1", Params().integer(pk)).status());
    return conn.exec_script(what, "COMMIT");
  });
  forget_document(run_id);
  return status;
}

}  // namespace orch::postgres
