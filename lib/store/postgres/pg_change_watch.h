// SPDX-License-Identifier: MIT
//
// PostgresStore::watch_changes: a connection of its own that LISTENs on the
// channel the store notifies ("<schema> e <run id>" for appended events, sent
// by the statement appending them (pg_rows.cc, event_append_sql), "<schema> E
// <length>:<run id>..." for the runs of a group commit (pg_group_statement.cc),
// "<schema> h <collection>" for host records, by a trigger (pg_schema.cc,
// migration 3); delivered at commit), and a thread that passes this store's schema's
// changes to a callback. The connection is re-opened after a failure (with a
// growing pause); notifications sent while it was down are lost, as the
// Store interface allows.
//
// Thread-safety: the callback runs on the watch's thread; destroying the
// watch stops that thread (waking it at once) and joins it.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "orch/store.h"
#include "store/postgres/pg_connection.h"

namespace orch::postgres {

// The channel every orch schema's changes are announced on.
inline constexpr const char* kChangesChannel = "orch_changes";

// The changes `payload` announces when it starts with `prefix` ("<schema> "):
// one for "e <run id>" or "h <collection>", one per run for "E " followed
// by "<length>:<run id>" for each (lengths in bytes). None for another
// schema's or a malformed payload (of an "E" list, the runs before the fault).
std::vector<StoreChange> parse_change_payload(std::string_view payload, std::string_view prefix);

class PgChangeWatch final : public StoreWatch {
 public:
  // `schema`: the schema whose notifications count (the one the store's
  // tables live in, as its current_schema()).
  // `on_reconnect` (optional) runs on the watch's thread each time it is
  // listening again after its connection failed: what was announced
  // meanwhile was not heard.
  static Result<std::unique_ptr<PgChangeWatch>> start(const ConnectSettings& settings, std::string schema,
                                                     std::function<void(const StoreChange&)> on_change,
                                                     std::function<void()> on_reconnect = nullptr);
  ~PgChangeWatch() override;

 private:
  PgChangeWatch(const ConnectSettings& settings, std::string schema, std::function<void(const StoreChange&)> on_change,
                std::function<void()> on_reconnect);
  // Owns `conn` (listening already).
  void run(struct pg_conn* conn);
  // Connects and LISTENs; null (after logging nothing: the store has no log)
  // when the server cannot be reached.
  struct pg_conn* connect_and_listen();
  // Passes on the notifications libpq has read; false when the connection failed.
  bool drain(struct pg_conn* conn);

  ConnectSettings settings_;
  std::string prefix_;  // "<schema> "
  std::function<void(const StoreChange&)> on_change_;
  std::function<void()> on_reconnect_;
  int wake_fd_ = -1;    // an eventfd: written to stop the thread
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace orch::postgres
