// SPDX-License-Identifier: MIT
#include "store/postgres/pg_change_watch.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace orch::postgres {

Result<std::unique_ptr<PgChangeWatch>> PgChangeWatch::start(const ConnectSettings& settings, std::string schema,
                                                          std::function<void(const StoreChange&)> on_change,
                                                          std::function<void()> on_reconnect) {
  if (!on_change) return Status::invalid_argument("watch_changes needs a callback");
  std::unique_ptr<PgChangeWatch> watch(
      new PgChangeWatch(settings, std::move(schema), std::move(on_change), std::move(on_reconnect)));
  if (watch->wake_fd_ < 0) return Status::internal(std::string("watch_changes: eventfd: ") + std::strerror(errno));
  // Listening before this returns: a change made after watch_changes
  // returned is heard (unless the connection drops later).
  pg_conn* first = watch->connect_and_listen();
  if (first == nullptr) return Status::unavailable("watch_changes: cannot connect to PostgreSQL to LISTEN");
  watch->thread_ = std::thread([raw = watch.get(), first] { raw->run(first); });
  return watch;
}

PgChangeWatch::PgChangeWatch(const ConnectSettings& settings, std::string schema,
                           std::function<void(const StoreChange&)> on_change, std::function<void()> on_reconnect)
    : settings_(settings),
      prefix_(std::move(schema) + " "),
      on_change_(std::move(on_change)),
      on_reconnect_(std::move(on_reconnect)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

PgChangeWatch::~PgChangeWatch() {
  stopping_ = true;
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

pg_conn* PgChangeWatch::connect_and_listen() {
  const std::string timeout = std::to_string(settings_.connect_timeout_s);
  const char* keys[] = {"dbname", "connect_timeout", "fallback_application_name", nullptr};
  const char* values[] = {settings_.conninfo.c_str(), timeout.c_str(), "orch-events", nullptr};
  pg_conn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return nullptr;
  if (PQstatus(conn) == CONNECTION_OK) {
    // The server's goodbye at a shutdown is expected here, not worth stderr.
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
    PGresult* listened = PQexec(conn, (std::string("LISTEN ") + kChangesChannel).c_str());
    const bool ok = PQresultStatus(listened) == PGRES_COMMAND_OK;
    PQclear(listened);
    if (ok && PQsetnonblocking(conn, 1) == 0) return conn;
  }
  PQfinish(conn);
  return nullptr;
}

std::vector<StoreChange> parse_change_payload(std::string_view payload, std::string_view prefix) {
  std::vector<StoreChange> out;
  if (payload.size() <= prefix.size() + 2 || payload.compare(0, prefix.size(), prefix) != 0 ||
      payload[prefix.size() + 1] != ' ') {
    return out;
  }
  const char kind = payload[prefix.size()];
  std::string_view rest = payload.substr(prefix.size() + 2);
  if (kind == 'e' || kind == 'h') {
    StoreChange change;
    change.kind = kind == 'e' ? StoreChange::Kind::kEvents : StoreChange::Kind::kHostRecords;
    change.key = std::string(rest);
    out.push_back(std::move(change));
  } else if (kind == 'E') {
    // "<length>:<run id>" per run; a malformed rest ends the list.
    while (!rest.empty()) {
      size_t length = 0;
      auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), length);
      const size_t digits = static_cast<size_t>(end - rest.data());
      if (error != std::errc() || digits == 0 || digits >= rest.size() || rest[digits] != ':' ||
          length > rest.size() - digits - 1) {
        break;
      }
      StoreChange change;
      change.kind = StoreChange::Kind::kEvents;
      change.key = std::string(rest.substr(digits + 1, length));
      out.push_back(std::move(change));
      rest.remove_prefix(digits + 1 + length);
    }
  }
  return out;
}

bool PgChangeWatch::drain(pg_conn* conn) {
  if (PQconsumeInput(conn) == 0) return false;
  while (PGnotify* n = PQnotifies(conn)) {
    std::string_view payload = n->extra != nullptr ? n->extra : "";
    for (const StoreChange& change : parse_change_payload(payload, prefix_)) on_change_(change);
    PQfreemem(n);
  }
  return PQstatus(conn) == CONNECTION_OK;
}

void PgChangeWatch::run(pg_conn* conn) {
  int pause_ms = 100;  // before reconnecting; doubles up to 5 s
  while (!stopping_) {
    if (conn == nullptr) {
      conn = connect_and_listen();
      if (conn != nullptr && on_reconnect_) on_reconnect_();
    }
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {conn != nullptr ? PQsocket(conn) : -1, POLLIN, 0}};
    const int timeout = conn != nullptr ? -1 : pause_ms;
    if (conn == nullptr) pause_ms = std::min(pause_ms * 2, 5000);
    if (poll(fds, 2, timeout) < 0 && errno != EINTR) break;
    if (stopping_ || (fds[0].revents & POLLIN) != 0) break;
    if (conn != nullptr && fds[1].revents != 0) {
      if (drain(conn)) {
        pause_ms = 100;
      } else {
        PQfinish(conn);
        conn = nullptr;
      }
    }
  }
  if (conn != nullptr) PQfinish(conn);
}

}  // namespace orch::postgres
