// SPDX-License-Identifier: MIT
#include "transfer/store_transfer.h"

#include "orch/version.h"
#include "transfer/record_json.h"
#include "worker_book.h"

namespace orch::server {
namespace {

constexpr int kFormatVersion = 1;
// Runs listed per page, events read per call, and items an import writes per
// batch: enough to keep the stores' round trips few, small enough to bound memory.
constexpr size_t kRunsPerPage = 256;
constexpr size_t kEventsPerRead = 1000;
constexpr size_t kItemsPerBatch = 1000;

void write_line(std::ostream& out, const Value& v) {
  std::string line = v.to_json();
  line.push_back('\n');
  out.write(line.data(), static_cast<std::streamsize>(line.size()));
}

Value counts_json(const TransferCounts& c) {
  return Value::object({{"workflows", static_cast<long long>(c.workflows)},
                        {"host_records", static_cast<long long>(c.host_records)},
                        {"runs", static_cast<long long>(c.runs)},
                        {"checkpoints", static_cast<long long>(c.checkpoints)},
                        {"pending_writes", static_cast<long long>(c.pending_writes)},
                        {"steps", static_cast<long long>(c.steps)},
                        {"events", static_cast<long long>(c.events)}});
}

Status export_run(Store& store, std::ostream& out, const RunRecord& run, TransferCounts* counts) {
  // Every part is read before the run line goes out: a read error then
  // leaves no half-written run in the file.
  ORCH_ASSIGN_OR_RETURN(auto checkpoints, store.list_checkpoints(run.id));
  ORCH_ASSIGN_OR_RETURN(auto writes, store.list_pending_writes(run.id));
  ORCH_ASSIGN_OR_RETURN(auto steps, store.list_steps(run.id));
  write_line(out, Value::object({{"type", "run"}, {"run", to_json(run)}}));
  for (const Checkpoint& c : checkpoints) write_line(out, Value::object({{"type", "checkpoint"}, {"checkpoint", to_json(c)}}));
  for (const PendingWrite& w : writes) write_line(out, Value::object({{"type", "pending_write"}, {"pending_write", to_json(w)}}));
  for (const StepRecord& s : steps) write_line(out, Value::object({{"type", "step"}, {"step", to_json(s)}}));
  counts->runs += 1;
  counts->checkpoints += static_cast<int64_t>(checkpoints.size());
  counts->pending_writes += static_cast<int64_t>(writes.size());
  counts->steps += static_cast<int64_t>(steps.size());
  for (int64_t after = 0;;) {
    ORCH_ASSIGN_OR_RETURN(auto events, store.list_events(run.id, after, kEventsPerRead));
    for (const EventRecord& e : events) write_line(out, Value::object({{"type", "event"}, {"event", to_json(e)}}));
    counts->events += static_cast<int64_t>(events.size());
    if (events.size() < kEventsPerRead) break;
    after = events.back().seq;
  }
  return out ? Status() : Status::internal("writing the export failed");
}

// Reads one line of at most `max` bytes (without its '\n'). False at the end
// of the input; a longer line is an error, not an allocation without bound.
Result<bool> read_line(std::istream& in, size_t max, std::string* line) {
  line->clear();
  std::streambuf* buf = in.rdbuf();
  for (;;) {
    int c = buf->sbumpc();
    if (c == std::char_traits<char>::eof()) return !line->empty();
    if (c == '\n') return true;
    if (line->size() >= max) {
      return Status::resource_exhausted("line longer than " + std::to_string(max) + " bytes");
    }
    line->push_back(static_cast<char>(c));
  }
}

// The import's progress through the file.
class Importer {
 public:
  Importer(Store& store, TransferCounts* counts) : store_(store), counts_(counts) {}

  Status header(const Value& v) {
    const Value* format = v.find("orch_export");
    if (format == nullptr) return Status::invalid_argument("not an orch export (no orch_export header)");
    if (!format->is_int() || format->as_int() != kFormatVersion) {
      return Status::invalid_argument("export format " + format->to_json() + " is not supported (this orch reads " +
                                      std::to_string(kFormatVersion) + ")");
    }
    return Status();
  }

  Status record(const Value& v) {
    if (ended_) return Status::invalid_argument("a record after the end line");
    const std::string type = v["type"].get_string("");
    if (type == "workflow") return workflow(v["workflow"]);
    if (type == "host_record") return host_record(v);
    if (type == "run") return run(v["run"]);
    if (type == "checkpoint") return checkpoint(v["checkpoint"]);
    if (type == "pending_write") return part(pending_write_from_json(v["pending_write"]), &batch_.pending_writes, &counts_->pending_writes);
    if (type == "step") return part(step_from_json(v["step"]), &batch_.steps, &counts_->steps);
    if (type == "event") return part(event_from_json(v["event"]), &batch_.events, &counts_->events);
    if (type == "end") {
      ORCH_RETURN_IF_ERROR(flush());
      ended_ = true;
      return Status();
    }
    return Status::invalid_argument("unknown record type " + v["type"].to_json());
  }

  Status finish() {
    ORCH_RETURN_IF_ERROR(flush());
    if (!ended_) return Status::failed_precondition("the export ends without its end line: it was cut short");
    return Status();
  }

 private:
  Status workflow(const Value& v) {
    ORCH_RETURN_IF_ERROR(flush());
    ORCH_ASSIGN_OR_RETURN(WorkflowRecord w, workflow_from_json(v));
    Status s = store_.put_workflow(w, /*create_only=*/true);
    if (s.code() == StatusCode::kAlreadyExists) {
      counts_->skipped_workflows += 1;
      return Status();
    }
    ORCH_RETURN_IF_ERROR(s);
    counts_->workflows += 1;
    return Status();
  }

  Status host_record(const Value& v) {
    ORCH_RETURN_IF_ERROR(flush());
    const Value& collection = v["collection"];
    const Value& id = v["id"];
    if (!collection.is_string() || collection.as_string().empty() || !id.is_string() || id.as_string().empty()) {
      return Status::invalid_argument("host_record needs a collection and an id (strings)");
    }
    // Only what export writes: a file must not put records where orch serve
    // keeps other state (shared rate limits, say).
    if (collection.as_string() != kWorkersCollection) {
      return Status::invalid_argument("host_record collection " + collection.to_json() + " is not one orch exports");
    }
    if (!v["record"].is_object()) return Status::invalid_argument("host_record.record must be an object");
    ORCH_RETURN_IF_ERROR(store_.put_host_record(collection.as_string(), id.as_string(), v["record"]));
    counts_->host_records += 1;
    return Status();
  }

  Status run(const Value& v) {
    ORCH_RETURN_IF_ERROR(flush());
    ORCH_ASSIGN_OR_RETURN(RunRecord r, run_from_json(v));
    run_id_ = r.id;
    Status s = store_.create_run(r);
    skipping_ = s.code() == StatusCode::kAlreadyExists;
    if (skipping_) {
      counts_->skipped_runs += 1;
      return Status();
    }
    ORCH_RETURN_IF_ERROR(s);
    run_ = std::move(r);
    counts_->runs += 1;
    return Status();
  }

  Status checkpoint(const Value& v) {
    ORCH_ASSIGN_OR_RETURN(Checkpoint c, checkpoint_from_json(v));
    ORCH_RETURN_IF_ERROR(belongs(c.run_id, "checkpoint"));
    if (skipping_) return Status();
    // Parts written so far go first: a checkpoint drops the run's pending writes.
    ORCH_RETURN_IF_ERROR(flush());
    ORCH_RETURN_IF_ERROR(store_.commit_checkpoint(c, run_, /*sync_to_disk=*/false));
    counts_->checkpoints += 1;
    return Status();
  }

  template <typename T>
  Status part(Result<T> parsed, std::vector<T>* into, int64_t* count) {
    if (!parsed.ok()) return parsed.status();
    ORCH_RETURN_IF_ERROR(belongs(parsed->run_id, "part"));
    if (skipping_) return Status();
    into->push_back(std::move(parsed).value());
    *count += 1;
    if (++batched_ >= kItemsPerBatch) return flush();
    return Status();
  }

  Status belongs(const std::string& run_id, const char* what) {
    if (run_id_.empty() || run_id != run_id_) {
      return Status::invalid_argument(std::string(what) + " of run '" + run_id + "' does not follow that run's line");
    }
    return Status();
  }

  Status flush() {
    if (batch_.empty()) return Status();
    StoreBatch batch = std::move(batch_);
    batch_ = StoreBatch();
    batched_ = 0;
    return store_.write_batch(batch);
  }

  Store& store_;
  TransferCounts* counts_;
  std::string run_id_;  // the run whose parts may follow
  RunRecord run_;
  bool skipping_ = false;  // that run was already in the store
  bool ended_ = false;
  StoreBatch batch_;
  size_t batched_ = 0;
};

}  // namespace

Status export_store(Store& store, std::ostream& out, const ExportOptions& options, TransferCounts* counts) {
  *counts = TransferCounts();
  write_line(out, Value::object({{"orch_export", kFormatVersion}, {"orch_version", std::string(orch::version())}}));
  ORCH_ASSIGN_OR_RETURN(auto workflows, store.list_workflows());
  for (const WorkflowRecord& w : workflows) write_line(out, Value::object({{"type", "workflow"}, {"workflow", to_json(w)}}));
  counts->workflows = static_cast<int64_t>(workflows.size());
  auto workers = store.list_host_records(kWorkersCollection);
  if (!workers.ok() && workers.status().code() != StatusCode::kUnimplemented) return workers.status();
  if (workers.ok()) {
    for (const Value& record : *workers) {
      const Value& id = record["id"];
      if (!id.is_string() || id.as_string().empty()) continue;  // not one the server wrote
      write_line(out, Value::object({{"type", "host_record"}, {"collection", kWorkersCollection}, {"id", id}, {"record", record}}));
      counts->host_records += 1;
    }
  }
  // Stores list runs newest first; they are written oldest first so that
  // the target lists them in the source's order. Only their ids are held.
  std::vector<std::string> ids;
  RunFilter page;
  page.limit = kRunsPerPage;
  for (page.offset = 0;; page.offset += kRunsPerPage) {
    ORCH_ASSIGN_OR_RETURN(auto runs, store.list_runs(page));
    for (const RunRecord& r : runs) {
      if ((r.status == RunStatus::kRunning || r.status == RunStatus::kPending) && !options.include_active) {
        counts->active_runs_left += 1;
        continue;
      }
      ids.push_back(r.id);
    }
    if (runs.size() < kRunsPerPage) break;
  }
  for (auto id = ids.rbegin(); id != ids.rend(); ++id) {
    ORCH_ASSIGN_OR_RETURN(RunRecord r, store.get_run(*id));
    ORCH_RETURN_IF_ERROR(export_run(store, out, r, counts));
  }
  Value end = counts_json(*counts);
  end.set("type", "end");
  write_line(out, end);
  out.flush();
  return out ? Status() : Status::internal("writing the export failed");
}

Status import_store(Store& store, std::istream& in, const ImportOptions& options, TransferCounts* counts) {
  *counts = TransferCounts();
  Importer importer(store, counts);
  std::string line;
  for (int64_t number = 1;; ++number) {
    auto more = read_line(in, options.max_line_bytes, &line);
    auto at = [number](const Status& s) {
      return Status(s.code(), "line " + std::to_string(number) + ": " + s.message());
    };
    if (!more.ok()) return at(more.status());
    if (!*more) {
      if (number == 1) return Status::invalid_argument("the export is empty");
      break;
    }
    auto v = parse_json(line);
    if (!v.ok()) return at(v.status());
    if (!v->is_object()) return at(Status::invalid_argument("a record must be a JSON object"));
    Status s = number == 1 ? importer.header(*v) : importer.record(*v);
    if (!s.ok()) return at(s);
  }
  return importer.finish();
}

}  // namespace orch::server
