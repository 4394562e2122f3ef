// SPDX-License-Identifier: MIT
//
// `orch export` and `orch import`: a store's workflows, workers and runs at
// rest, moved through a JSON Lines file (transfer/store_transfer.h), e.g.
// from one node's SQLite file into a PostgreSQL database.
#include <fstream>
#include <iostream>

#include "app.h"
#include "cli/cli.h"
#include "config.h"
#include "orch/postgres_store.h"
#include "private_files.h"
#include "transfer/store_transfer.h"

namespace orch::cli {
namespace {

void print_counts(const char* verb, const server::TransferCounts& c) {
  std::cerr << verb << " " << c.workflows << " workflows, " << c.host_records << " workers, " << c.runs << " runs ("
            << c.checkpoints << " checkpoints, " << c.steps << " steps, " << c.events << " events, " << c.pending_writes
            << " pending writes)";
  if (c.skipped_workflows + c.skipped_runs > 0) {
    std::cerr << "; already there, skipped: " << c.skipped_workflows << " workflows, " << c.skipped_runs << " runs";
  }
  if (c.active_runs_left > 0) {
    std::cerr << "; left out: " << c.active_runs_left << " running runs (--include-active moves them too)";
  }
  std::cerr << "\n";
}

// --db VALUE, and the rest of the arguments in `positional` / `flags`.
bool parse(const Args& args, const char* command, std::string* db, std::string* file, bool* include_active) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--db" || a == "--out") && i + 1 < args.size()) {
      (a == "--db" ? *db : *file) = args[++i];
    } else if (a == "--include-active" && include_active != nullptr) {
      *include_active = true;
    } else if (include_active == nullptr && file->empty() && (a == "-" || a.rfind("--", 0) != 0)) {
      *file = a;
    } else {
      std::cerr << "orch " << command << ": unexpected argument '" << a << "'\n";
      return false;
    }
  }
  if (db->empty()) {
    std::cerr << "orch " << command << ": --db is required (a SQLite file or a postgres:// URI)\n";
    return false;
  }
  return true;
}

}  // namespace

int export_command(const Args& args) {
  std::string db, out_path;
  bool include_active = false;
  if (!parse(args, "export", &db, &out_path, &include_active)) return kExitUsage;
  server::ServerConfig config;
  config.db = db;
  if (db != ":memory:" && !is_postgres_uri(db) && !std::ifstream(db)) {
    std::cerr << "orch export: " << db << ": no such database file\n";  // opening would create it
    return kExitUsage;
  }
  auto store = server::open_store(config);
  if (!store.ok()) {
    std::cerr << "orch export: " << store.status().message() << "\n";
    return kExitFailure;
  }
  std::ofstream file;
  if (!out_path.empty() && out_path != "-") {
    // An export holds worker tokens: a new file is private (0600).
    Status created = server::create_private_file(out_path);
    if (!created.ok()) {
      std::cerr << "orch export: " << created.message() << "\n";
      return kExitUsage;
    }
    file.open(out_path, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << "orch export: cannot write " << out_path << "\n";
      return kExitUsage;
    }
  }
  std::ostream& out = file.is_open() ? static_cast<std::ostream&>(file) : std::cout;
  server::ExportOptions options;
  options.include_active = include_active;
  server::TransferCounts counts;
  Status s = server::export_store(**store, out, options, &counts);
  if (!s.ok()) {
    std::cerr << "orch export: " << s.message() << "\n";
    return kExitFailure;
  }
  print_counts("exported", counts);
  return kExitOk;
}

int import_command(const Args& args) {
  std::string db, in_path;
  if (!parse(args, "import", &db, &in_path, nullptr)) return kExitUsage;
  std::ifstream file;
  if (!in_path.empty() && in_path != "-") {
    file.open(in_path, std::ios::binary);
    if (!file) {
      std::cerr << "orch import: cannot read " << in_path << "\n";
      return kExitUsage;
    }
  }
  server::ServerConfig config;
  config.db = db;
  auto store = server::open_store(config);
  if (!store.ok()) {
    std::cerr << "orch import: " << store.status().message() << "\n";
    return kExitFailure;
  }
  std::istream& in = file.is_open() ? static_cast<std::istream&>(file) : std::cin;
  server::TransferCounts counts;
  Status s = server::import_store(**store, in, server::ImportOptions(), &counts);
  print_counts(s.ok() ? "imported" : "imported before the error:", counts);
  if (!s.ok()) {
    std::cerr << "orch import: " << s.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace orch::cli
