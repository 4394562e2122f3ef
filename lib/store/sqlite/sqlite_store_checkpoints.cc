// SPDX-License-Identifier: MIT
// Checkpoints of the SQLite store: commit, read back, truncate, and the cache
// of each run's latest document. The row format is in store/checkpoint_codec.h.
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "store/sqlite/sqlite_definitions.h"
#include "store/sqlite/sqlite_packed_value.h"
#include "store/sqlite/sqlite_rows.h"
#include "store/sqlite/sqlite_store_impl.h"

namespace orch::sqlite {
namespace {

// The row columns a Checkpoint needs besides its document, from
// kRowTables. The run's id comes from its row; a NULL parent_id is the id of
// the row before (schema 7).
constexpr const char* kRowColumns =
    "c.id, r.id, c.seq, c.base_seq, "
    "COALESCE(c.parent_id, (SELECT p.id FROM checkpoints p WHERE p.run_pk = c.run_pk AND p.seq = c.seq - 1), ''), "
    "c.step_id, c.version, c.created_at_ms";
constexpr const char* kRowTables = " FROM checkpoints c JOIN runs r ON r.pk = c.run_pk";

struct RowHeader {
  Checkpoint checkpoint;  // without state, metadata and completed nodes
  int64_t seq = 0;
  int64_t base_seq = 0;
};

// Reads kRowColumns from the current row.
RowHeader read_header(const SQLite::Statement& stmt) {
  RowHeader h;
  h.checkpoint.id = read_id(stmt, 0);
  h.checkpoint.run_id = stmt.getColumn(1).getString();
  h.seq = stmt.getColumn(2).getInt64();
  h.base_seq = stmt.getColumn(3).getInt64();
  h.checkpoint.parent_id = read_id(stmt, 4);
  h.checkpoint.step_id = stmt.getColumn(5).getString();
  h.checkpoint.version = stmt.getColumn(6).getInt64();
  h.checkpoint.created_at_ms = stmt.getColumn(7).getInt64();
  return h;
}

// A row's body: since schema 9 a packed value (sqlite_packed_value.h), a
// BLOB, a third of a delta's JSON text smaller; rows written before hold JSON
// text, which reads the same. The chain's byte counts (chain_bytes,
// base_bytes) stay those of the JSON text, so when to take a snapshot does
// not change with the form.
struct StoredBody {
  std::string bytes;
  bool packed = false;
};

StoredBody stored_body(const Value& body, std::string json) {
  StoredBody out;
  out.bytes = pack_value(body);
  out.packed = !out.bytes.empty();
  if (!out.packed) out.bytes = std::move(json);  // too deep to pack
  return out;
}

void bind_body(SQLite::Statement& stmt, int index, const StoredBody& body) {
  if (body.packed) {
    stmt.bindNoCopy(index, static_cast<const void*>(body.bytes.data()), static_cast<int>(body.bytes.size()));
  } else {
    stmt.bindNoCopy(index, body.bytes);
  }
}

// A row's kind as stored since schema 10: one letter instead of the word
// ('snapshot' or 'delta', 5 to 8 bytes a row). Rows written before keep
// the word, which reads the same.
constexpr const char* kStoredSnapshot = "s";
constexpr const char* kStoredDelta = "d";

std::string_view kind_of_stored(std::string_view stored) {
  if (stored == kStoredSnapshot) return kSnapshotKind;
  if (stored == kStoredDelta) return kDeltaKind;
  return stored;
}

// Feeds the row's kind and body (columns kind_index, kind_index + 1) to `builder`.
Status add_row(DocumentBuilder& builder, const std::string& run_id, int64_t seq, const SQLite::Statement& stmt,
               int kind_index) {
  SQLite::Column kind = stmt.getColumn(kind_index);
  SQLite::Column body = stmt.getColumn(kind_index + 1);
  const std::string_view kind_text =
      kind_of_stored(std::string_view(kind.getText(), static_cast<size_t>(kind.getBytes())));
  if (!body.isBlob())
    return builder.add(seq, kind_text, std::string_view(body.getText(), static_cast<size_t>(body.getBytes())));
  Result<Value> value =
      unpack_value(std::string_view(static_cast<const char*>(body.getBlob()), static_cast<size_t>(body.getBytes())));
  if (!value.ok()) {
    return Status::internal("checkpoint data of run " + run_id + " is corrupt at seq " + std::to_string(seq) + ": " +
                            value.status().message());
  }
  return builder.add_value(seq, kind_text, std::move(value).value());
}

// Deltas after a snapshot may add up to this much however small the snapshot
// (checkpoint_codec.h): the checkpoints of a small state were mostly
// snapshots (~250 bytes against ~180 for a delta).
constexpr int64_t kMinChainBytes = 2048;

bool same_link(const ChainLink& a, const ChainLink& b) {
  return a.id == b.id && a.seq == b.seq && a.base_seq == b.base_seq &&
         a.chain_bytes == b.chain_bytes && a.base_bytes == b.base_bytes;
}

}  // namespace

// ---- Reading ------------------------------------------------------------------------

Result<Value> SqliteStore::load_document(Connection& conn, const std::string& run_id,
                                         int64_t base_seq, int64_t seq) {
  Query q(conn,
          "SELECT seq, kind, body FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) AND seq BETWEEN ?2 AND ?3 "
          "ORDER BY seq");
  q->bind(1, run_id);
  q->bind(2, base_seq);
  q->bind(3, seq);
  DocumentBuilder builder(run_id);
  int64_t first = -1;
  int64_t last = -1;
  while (q->executeStep()) {
    last = q->getColumn(0).getInt64();
    if (first < 0) first = last;
    ORCH_RETURN_IF_ERROR(add_row(builder, run_id, last, *q, 1));
  }
  if (first != base_seq || last != seq) {
    return Status::internal("checkpoint data of run " + run_id + " is corrupt: the chain " +
                            std::to_string(base_seq) + ".." + std::to_string(seq) +
                            " is incomplete");
  }
  return builder.document();
}

Result<Checkpoint> SqliteStore::read_checkpoint_row(Connection& conn, Query& q, const std::string& key) {
  std::optional<RowHeader> header;
  if (q->executeStep()) header = read_header(*q);
  q->reset();
  if (!header) return Status::not_found(key);
  Checkpoint& cp = header->checkpoint;
  CachedDocument cached;
  Value document;
  if (cached_document(cp.run_id, &cached) && cached.link.id == cp.id &&
      cached.link.seq == header->seq) {
    document = std::move(cached.document);
  } else {
    ORCH_ASSIGN_OR_RETURN(document, load_document(conn, cp.run_id, header->base_seq, header->seq));
  }
  ORCH_RETURN_IF_ERROR(unpack_document(document, &cp));
  return std::move(cp);
}

namespace {
const std::string kSelectById = std::string("SELECT ") + kRowColumns + kRowTables + " WHERE c.id = ?1";
const std::string kSelectBySeq = std::string("SELECT ") + kRowColumns + kRowTables + " WHERE c.run_pk = ?1 AND c.seq = ?2";
}  // namespace

Result<Checkpoint> SqliteStore::checkpoint_at(Connection& conn, int64_t pk, int64_t seq, int64_t event_seq) {
  Query q(conn, kSelectBySeq);
  q->bind(1, pk);
  q->bind(2, seq);
  Result<Checkpoint> cp = read_checkpoint_row(conn, q, "checkpoint " + std::to_string(seq));
  if (!cp.ok()) {
    return Status::internal("event " + std::to_string(event_seq) + " names checkpoint " + std::to_string(seq) +
                            " of its run for its data: " + cp.status().message());
  }
  return cp;
}

Status SqliteStore::restore_event_states(Connection& conn, int64_t pk, const std::string& run_id,
                                         int64_t version) {
  // The rows with events derived from a checkpoint about to go, read whole.
  // A batch row (sqlite_rows.h) is replaced by a row per event.
  std::vector<std::pair<int64_t, bool>> rows;  // first seq, a batch row
  std::vector<std::pair<int64_t, StoredEvent>> restored;  // seq, whole data
  std::vector<EventRecord> unbatched;                    // events of batch rows, whole
  // Seq 1 holds its own time, the base of the others', and keeps it.
  const int64_t time_base = event_time_base(conn, pk);
  {
    static const std::string kSelect = std::string("SELECT ") + kEventSelectList +
                                       " FROM events WHERE run_pk = ?1 AND form <> 0 AND checkpoint_seq IN "
                                       "(SELECT seq FROM checkpoints WHERE run_pk = ?1 AND version > ?2)";
    std::vector<RowEvent> derived;
    std::vector<bool> in_batch;  // per event of `derived`: read from a batch row
    {
      Query q(conn, kSelect);
      q->bind(1, pk);
      q->bind(2, version);
      while (q->executeStep()) {
        const bool batch = q->getColumn(4).getInt64() == kBatchRowForm;
        rows.emplace_back(q->getColumn(0).getInt64(), batch);
        ORCH_RETURN_IF_ERROR(read_event_row(*q, run_id, time_base, &derived));
        in_batch.resize(derived.size(), batch);
      }
    }
    for (size_t i = 0; i < derived.size(); ++i) {
      RowEvent& row = derived[i];
      if (row.form != EventForm::kWhole) {
        ORCH_ASSIGN_OR_RETURN(Checkpoint cp, checkpoint_at(conn, pk, row.checkpoint_seq, row.event.seq));
        complete_event(&row.event, row.form, cp);
      }
      if (in_batch[i]) {
        unbatched.push_back(std::move(row.event));
      } else {
        restored.emplace_back(row.event.seq, encode_event(row.event, nullptr));
      }
    }
  }
  Query update(conn, "UPDATE events SET data = ?3, form = 0, checkpoint_seq = NULL WHERE run_pk = ?1 AND seq = ?2");
  for (const auto& [seq, data] : restored) {
    update->bind(1, pk);
    update->bind(2, seq);
    bind_event_data(*update, 3, data);
    update->exec();
    update->reset();
  }
  if (unbatched.empty()) return Status();
  Query remove(conn, "DELETE FROM events WHERE run_pk = ?1 AND seq = ?2");
  for (const auto& [seq, batch] : rows) {
    if (!batch) continue;
    remove->bind(1, pk);
    remove->bind(2, seq);
    remove->exec();
    remove->reset();
  }
  Query insert(conn, kEventInsertSql);
  for (const EventRecord& event : unbatched) {
    const StoredEvent stored = encode_event(event, nullptr);
    bind_event(*insert, pk, event.seq, event, stored, 0, time_base);
    insert->exec();
    insert->reset();
  }
  return Status();
}

Result<Checkpoint> SqliteStore::get_checkpoint(const std::string& checkpoint_id) {
  return with_connection("get_checkpoint", [&](Connection& conn) -> Result<Checkpoint> {
    ReadTransaction txn(conn);
    Query q(conn, kSelectById);
    bind_id(*q, 1, checkpoint_id);
    Result<Checkpoint> cp = read_checkpoint_row(conn, q, checkpoint_id);
    if (!cp.ok() && cp.status().code() == StatusCode::kNotFound) {
      return Status::not_found("checkpoint " + checkpoint_id + " not found");
    }
    return cp;
  });
}

Result<Checkpoint> SqliteStore::latest_checkpoint(const std::string& run_id) {
  return with_connection("latest_checkpoint", [&](Connection& conn) -> Result<Checkpoint> {
    static const std::string kSelect = std::string("SELECT ") + kRowColumns + kRowTables +
                                       " WHERE c.run_pk = (SELECT pk FROM runs WHERE id = ?1) ORDER BY c.seq DESC LIMIT 1";
    ReadTransaction txn(conn);
    Query q(conn, kSelect);
    q->bind(1, run_id);
    Result<Checkpoint> cp = read_checkpoint_row(conn, q, run_id);
    if (!cp.ok() && cp.status().code() == StatusCode::kNotFound) {
      ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run_id));
      if (!exists) return run_not_found(run_id);
      return Status::not_found("run " + run_id + " has no checkpoint");
    }
    return cp;
  });
}

Result<std::vector<Checkpoint>> SqliteStore::list_checkpoints(const std::string& run_id) {
  return with_connection(
      "list_checkpoints", [&](Connection& conn) -> Result<std::vector<Checkpoint>> {
        static const std::string kSelect = std::string("SELECT ") + kRowColumns + ", c.kind, c.body" + kRowTables +
                                           " WHERE c.run_pk = (SELECT pk FROM runs WHERE id = ?1) ORDER BY c.seq";
        ReadTransaction txn(conn);
        ORCH_ASSIGN_OR_RETURN(bool exists, run_exists(conn, run_id));
        if (!exists) return run_not_found(run_id);
        Query q(conn, kSelect);
        q->bind(1, run_id);
        // One pass: each row's document is the previous one with its delta
        // applied; the checkpoints share whatever did not change.
        DocumentBuilder builder(run_id);
        std::vector<Checkpoint> out;
        while (q->executeStep()) {
          RowHeader header = read_header(*q);
          ORCH_RETURN_IF_ERROR(add_row(builder, run_id, header.seq, *q, 8));
          ORCH_RETURN_IF_ERROR(unpack_document(builder.document(), &header.checkpoint));
          out.push_back(std::move(header.checkpoint));
        }
        return out;
      });
}

// ---- Writing ------------------------------------------------------------------------

SqliteStore::PreparedCheckpoint SqliteStore::prepare_checkpoint(const Checkpoint& checkpoint,
                                                               const RunRecord& run,
                                                               const PreparedCheckpoint* after) {
  PreparedCheckpoint prepared;
  prepared.document = checkpoint_document(checkpoint);
  // Encode against the cached previous document before taking the writer
  // lock; inside, this is used only if that document is still the run's last.
  if (after != nullptr) {
    // It follows a checkpoint of its own batch: encoded once that one's link
    // is known (follow()), unless the earlier one's early encoding gives it.
    if (after->early) {
      prepared.previous = CachedDocument{after->early->link, after->document};
    } else {
      return prepared;
    }
  } else if (!cached_document(run.id, &prepared.previous)) {
    return prepared;
  }
  prepared.early = encode_checkpoint(checkpoint.id, prepared.document, &prepared.previous.link,
                                     &prepared.previous.document, options_.max_delta_chain, kMinChainBytes);
  return prepared;
}

void SqliteStore::follow(PreparedCheckpoint& prepared, const Checkpoint& checkpoint,
                         const PreparedCheckpoint& earlier) {
  if (!earlier.committed) return;
  if (prepared.early && same_link(*earlier.committed, prepared.previous.link)) return;  // encoded right already
  prepared.previous = CachedDocument{*earlier.committed, earlier.document};
  prepared.early = encode_checkpoint(checkpoint.id, prepared.document, &prepared.previous.link,
                                     &prepared.previous.document, options_.max_delta_chain, kMinChainBytes);
}

Status SqliteStore::write_checkpoint(Connection& conn, const Checkpoint& checkpoint, const RunRecord& run,
                                     PreparedCheckpoint& prepared, int64_t new_events,
                                     int64_t* last_event_seq, int64_t* run_pk_out, bool run_row,
                                     const RunCounters* known) {
  RunCounters read;
  if (known == nullptr) {
    ORCH_ASSIGN_OR_RETURN(read, read_run_counters(conn, run.id));
    known = &read;
  }
  const RunCounters& counters = *known;
  const int64_t pk = counters.pk;
  const int64_t new_last_event_seq = counters.last_event_seq + new_events;
  if (run_row) {
    Query update_run(conn, kRunProgressSql);
    bind_run_progress(*update_run, run, pk,
                      run.state.shares_storage_with(checkpoint.state) || run.state == checkpoint.state,
                      new_last_event_seq);
    update_run->exec();
  }
  if (last_event_seq != nullptr) *last_event_seq = new_last_event_seq;
  if (run_pk_out != nullptr) *run_pk_out = pk;
  const std::string_view status = run_status_name(run.status);
  if (run_row && counters.status != status) {
    Query update_status(conn, kRunStatusSql);
    update_status->bind(1, pk);
    update_status->bind(2, std::string(status));
    update_status->exec();
  }

  std::optional<ChainLink> last;
  {
    Query q(conn,
            "SELECT id, seq, base_seq, chain_bytes, base_bytes FROM checkpoints WHERE run_pk = ?1 "
            "ORDER BY seq DESC LIMIT 1");
    q->bind(1, pk);
    if (q->executeStep()) {
      last = ChainLink{read_id(*q, 0), q->getColumn(1).getInt64(), q->getColumn(2).getInt64(),
                       q->getColumn(3).getInt64(), q->getColumn(4).getInt64()};
    }
  }
  EncodedCheckpoint row;
  if (!last) {
    row = encode_checkpoint(checkpoint.id, prepared.document, nullptr, nullptr, options_.max_delta_chain, kMinChainBytes);
  } else if (prepared.early && same_link(*last, prepared.previous.link)) {
    row = std::move(*prepared.early);
  } else {
    // Another process wrote this run, or the cache lost it: diff against
    // the stored document.
    ORCH_ASSIGN_OR_RETURN(Value last_document, load_document(conn, run.id, last->base_seq, last->seq));
    row = encode_checkpoint(checkpoint.id, prepared.document, &*last, &last_document, options_.max_delta_chain,
                            kMinChainBytes);
  }
  Query insert(conn,
               "INSERT INTO checkpoints (id, seq, parent_id, step_id, version, created_at_ms, kind, "
               "base_seq, chain_bytes, base_bytes, body, run_pk) VALUES (?1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
               "?11, ?12, ?13)");
  bind_id(*insert, 1, checkpoint.id);
  insert->bind(3, row.link.seq);
  // The usual parent, the row before, is not stored again (kRowColumns).
  if (last && checkpoint.parent_id == last->id) {
    insert->bind(4);
  } else {
    bind_id(*insert, 4, checkpoint.parent_id);
  }
  insert->bind(5, checkpoint.step_id);
  insert->bind(6, checkpoint.version);
  insert->bind(7, checkpoint.created_at_ms);
  insert->bind(8, std::string(row.snapshot ? kStoredSnapshot : kStoredDelta));
  insert->bind(9, row.link.base_seq);
  insert->bind(10, row.link.chain_bytes);
  insert->bind(11, row.link.base_bytes);
  const StoredBody body = stored_body(row.body_value, std::move(row.body));
  bind_body(*insert, 12, body);
  insert->bind(13, pk);
  insert->exec();
  {
    Query q(conn, "DELETE FROM pending_writes WHERE run_id = ?1");
    q->bind(1, run.id);
    q->exec();
  }
  prepared.committed = std::move(row.link);
  return Status();
}

Status SqliteStore::resolve_state(Connection& conn, RunRecord* run) {
  if (!run->state.is_null()) return Status();
  Query q(conn,
          "SELECT id, seq, base_seq, chain_bytes, base_bytes FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) "
          "ORDER BY seq DESC LIMIT 1");
  q->bind(1, run->id);
  if (!q->executeStep()) return Status();  // no checkpoint: the state stays null
  ChainLink last{read_id(*q, 0), q->getColumn(1).getInt64(), q->getColumn(2).getInt64(),
                 q->getColumn(3).getInt64(), q->getColumn(4).getInt64()};
  q->reset();
  CachedDocument cached;
  if (cached_document(run->id, &cached) && same_link(last, cached.link)) {
    run->state = cached.document["state"];
    return Status();
  }
  ORCH_ASSIGN_OR_RETURN(Value document, load_document(conn, run->id, last.base_seq, last.seq));
  run->state = document["state"];
  return Status();
}

void SqliteStore::checkpoint_committed(const RunRecord& run, PreparedCheckpoint& prepared) {
  if (!prepared.committed) return;
  // A run that ended is rarely committed to again (only a replay or retry
  // does, and a cache miss just reads the chain): free its memory.
  if (is_terminal(run.status)) {
    forget_document(run.id);
  } else {
    cache_document(run.id, CachedDocument{std::move(*prepared.committed), std::move(prepared.document)});
  }
}

Status SqliteStore::commit_checkpoint(const Checkpoint& checkpoint, const RunRecord& run,
                                      bool sync_to_disk) {
  if (checkpoint.run_id != run.id) {
    return Status::invalid_argument("checkpoint " + checkpoint.id + " belongs to run " +
                                    checkpoint.run_id + ", not " + run.id);
  }
  PreparedCheckpoint prepared = prepare_checkpoint(checkpoint, run);
  Status status = with_writer("commit_checkpoint", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_, sync_to_disk);
    ORCH_RETURN_IF_ERROR(write_checkpoint(conn, checkpoint, run, prepared));
    txn.commit();
    return Status();
  });
  if (status.ok()) checkpoint_committed(run, prepared);
  return status;
}

Status SqliteStore::truncate_checkpoints(const std::string& run_id, int64_t version) {
  Status status = with_writer("truncate_checkpoints", [&](Connection& conn) -> Status {
    WriteTransaction txn(conn, writer_mu_);
    ORCH_ASSIGN_OR_RETURN(int64_t pk, run_pk(conn, run_id));

    int64_t first_dropped = -1;
    {
      Query q(conn, "SELECT MIN(seq) FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) AND version > ?2");
      q->bind(1, run_id);
      q->bind(2, version);
      if (q->executeStep() && !q->getColumn(0).isNull()) first_dropped = q->getColumn(0).getInt64();
    }
    if (first_dropped >= 0) {
      ORCH_RETURN_IF_ERROR(restore_event_states(conn, pk, run_id, version));
      {
        // A survivor after a dropped row stores its parent if that was the
        // row before it (kRowColumns), which may go.
        Query q(conn,
                "UPDATE checkpoints SET parent_id = (SELECT p.id FROM checkpoints p WHERE p.run_pk = ?1 AND "
                "p.seq = checkpoints.seq - 1) WHERE run_pk = ?1 AND seq > ?2 AND version <= ?3 AND parent_id IS NULL");
        q->bind(1, pk);
        q->bind(2, first_dropped);
        q->bind(3, version);
        q->exec();
      }
      // Versions increase along a run, so normally every row from the first
      // dropped one on goes and the surviving chains are intact. Should a
      // later row survive (versions out of order), its chain would run through
      // deleted rows: it is rewritten as a snapshot first.
      std::vector<std::tuple<int64_t, int64_t, StoredBody>> rewrites;  // seq, JSON bytes, body
      std::vector<std::pair<int64_t, int64_t>> survivors;
      {
        Query q(conn,
                "SELECT seq, base_seq FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) AND seq > ?2 AND version "
                "<= ?3");
        q->bind(1, run_id);
        q->bind(2, first_dropped);
        q->bind(3, version);
        while (q->executeStep())
          survivors.emplace_back(q->getColumn(0).getInt64(), q->getColumn(1).getInt64());
      }
      for (const auto& [seq, base_seq] : survivors) {
        ORCH_ASSIGN_OR_RETURN(Value document, load_document(conn, run_id, base_seq, seq));
        std::string json = document.to_json();
        const auto json_bytes = static_cast<int64_t>(json.size());
        rewrites.emplace_back(seq, json_bytes, stored_body(document, std::move(json)));
      }
      {
        Query q(conn, "DELETE FROM checkpoints WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) AND version > ?2");
        q->bind(1, run_id);
        q->bind(2, version);
        q->exec();
      }
      for (const auto& [seq, json_bytes, body] : rewrites) {
        Query q(conn,
                "UPDATE checkpoints SET kind = 's', base_seq = seq, chain_bytes = 0, "
                "base_bytes = ?3, "
                "body = ?4 WHERE run_pk = (SELECT pk FROM runs WHERE id = ?1) AND seq = ?2");
        q->bind(1, run_id);
        q->bind(2, seq);
        q->bind(3, json_bytes);
        bind_body(*q, 4, body);
        q->exec();
      }
    }
    // As in the in-memory store: results recorded for supersteps that are
    // being replayed no longer apply.
    {
      Query q(conn, "DELETE FROM pending_writes WHERE run_id = ?1");
      q->bind(1, run_id);
      q->exec();
    }
    txn.commit();
    return Status();
  });
  forget_document(run_id);
  return status;
}

}  // namespace orch::sqlite
