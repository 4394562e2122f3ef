// SPDX-License-Identifier: MIT
// One libpq connection: prepared statements, pipelines, deadlines (see
// pg_connection.h).
#include "store/postgres/pg_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <charconv>
#include <chrono>
#include <cstring>

#include "store/postgres/pg_status.h"

namespace orch::postgres {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---- Params -------------------------------------------------------------------

Params& Params::text(std::string_view value) {
  if (status_.ok() && value.find('\0') != std::string_view::npos) {
    status_ = Status::invalid_argument("parameter $" + std::to_string(values_.size() + 1) +
                                       " holds a NUL byte, which PostgreSQL text cannot store");
  }
  values_.emplace_back(value);
  nulls_.push_back(false);
  return *this;
}

Params& Params::integer(int64_t value) {
  values_.push_back(std::to_string(value));
  nulls_.push_back(false);
  return *this;
}

Params& Params::boolean(bool value) {
  values_.push_back(value ? "t" : "f");
  nulls_.push_back(false);
  return *this;
}

Params& Params::null() {
  values_.emplace_back();
  nulls_.push_back(true);
  return *this;
}

Params& Params::text_array(const std::vector<std::string>& values) {
  // {"a","b\"c"}: every element quoted; \ and " escaped with a backslash.
  // Copied a run of plain characters at a time (group commits put
  // checkpoints' and events' JSON in these).
  size_t size = 2;
  for (const std::string& value : values) size += value.size() + 3;
  std::string literal;
  literal.reserve(size + size / 16);
  literal += '{';
  for (size_t i = 0; i < values.size(); ++i) {
    literal += i > 0 ? ",\"" : "\"";
    std::string_view rest = values[i];
    for (size_t special = rest.find_first_of("\"\\"); special != std::string_view::npos;
         special = rest.find_first_of("\"\\")) {
      literal.append(rest.data(), special);
      literal += '\\';
      literal += rest[special];
      rest.remove_prefix(special + 1);
    }
    literal.append(rest.data(), rest.size());
    literal += '"';
  }
  literal += '}';
  return text(literal);
}

Params& Params::integer_array(const std::vector<int64_t>& values) {
  std::string literal = "{";
  for (size_t i = 0; i < values.size(); ++i) literal += (i > 0 ? "," : "") + std::to_string(values[i]);
  return text(literal + "}");
}

std::vector<const char*> Params::pointers() const {
  std::vector<const char*> out(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) out[i] = nulls_[i] ? nullptr : values_[i].c_str();
  return out;
}

// ---- Rows ---------------------------------------------------------------------

Rows::Rows(pg_result* result) : result_(result) {}
Rows::Rows(Rows&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
Rows& Rows::operator=(Rows&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}
Rows::~Rows() {
  if (result_ != nullptr) PQclear(result_);
}

int Rows::count() const { return result_ != nullptr ? PQntuples(result_) : 0; }

int64_t Rows::affected() const {
  if (result_ == nullptr) return 0;
  const char* n = PQcmdTuples(result_);
  int64_t out = 0;
  if (n != nullptr) std::from_chars(n, n + std::strlen(n), out);
  return out;
}

bool Rows::is_null(int row, int column) const { return PQgetisnull(result_, row, column) != 0; }

std::string_view Rows::text(int row, int column) const {
  return std::string_view(PQgetvalue(result_, row, column), static_cast<size_t>(PQgetlength(result_, row, column)));
}

Result<int64_t> Rows::integer(int row, int column) const {
  std::string_view v = text(row, column);
  int64_t out = 0;
  auto [end, error] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (error != std::errc() || end != v.data() + v.size() || is_null(row, column)) {
    const char* name = PQfname(result_, column);
    return Status::internal(std::string("column ") + (name != nullptr ? name : "?") + " holds '" + std::string(v) +
                            "', not an integer");
  }
  return out;
}

// ---- Connection -----------------------------------------------------------------

Result<std::unique_ptr<Connection>> Connection::open(const ConnectSettings& settings) {
  // Keywords are applied in order: the conninfo (expanded from "dbname")
  // first, so the timeout set here wins over one in it.
  const std::string timeout = std::to_string(settings.connect_timeout_s);
  const char* keys[] = {"dbname", "connect_timeout", "fallback_application_name", nullptr};
  const char* values[] = {settings.conninfo.c_str(), timeout.c_str(), "orch", nullptr};
  pg_conn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Status::unavailable("connecting to PostgreSQL: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    char* parse_error = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(settings.conninfo.c_str(), &parse_error);
    Status status = parsed == nullptr && parse_error != nullptr
                        ? Status::invalid_argument(std::string("invalid PostgreSQL conninfo: ") + parse_error)
                        : status_from_connection(conn, "connecting to PostgreSQL");
    if (parsed != nullptr) PQconninfoFree(parsed);
    if (parse_error != nullptr) PQfreemem(parse_error);
    PQfinish(conn);
    return status;
  }
  // Non-blocking: sends never block, and every wait goes through poll() with
  // a deadline (see flush_and_wait).
  if (PQsetnonblocking(conn, 1) != 0) {
    Status status = status_from_connection(conn, "connecting to PostgreSQL");
    PQfinish(conn);
    return status;
  }
  const int wait_limit = settings.statement_timeout_ms > 0 ? settings.statement_timeout_ms + 1000 : 0;
  std::unique_ptr<Connection> out(new Connection(conn, wait_limit));
  // client_min_messages: libpq would print every NOTICE (a "CREATE ... IF NOT
  // EXISTS" that found the thing) on stderr.
  std::string session = "SET client_min_messages = warning; SET statement_timeout = " +
                        std::to_string(settings.statement_timeout_ms) +
                        "; SET lock_timeout = " + std::to_string(settings.lock_timeout_ms);
  if (!settings.synchronous_commit) session += "; SET synchronous_commit = off";
  if (!settings.schema.empty()) session += "; SET search_path TO " + out->quote_identifier(settings.schema);
  ORCH_RETURN_IF_ERROR(out->exec_script("setting up the PostgreSQL session", session));
  return out;
}

Connection::~Connection() { PQfinish(conn_); }

std::string Connection::quote_identifier(const std::string& name) const {
  char* quoted = PQescapeIdentifier(conn_, name.c_str(), name.size());
  if (quoted == nullptr) return "\"\"";  // libpq refused it (bad encoding): an identifier nothing has
  std::string out = quoted;
  PQfreemem(quoted);
  return out;
}

bool Connection::broken() const { return given_up_ || PQstatus(conn_) != CONNECTION_OK; }

Status Connection::give_up(const std::string& what, const std::string& why) {
  given_up_ = true;
  return Status::unavailable(what + ": " + why);
}

int64_t Connection::deadline() const { return wait_limit_ms_ > 0 ? now_ms() + wait_limit_ms_ : -1; }

Status Connection::flush_and_wait(const std::string& what, int64_t deadline_ms) {
  const int fd = PQsocket(conn_);
  if (fd < 0) return give_up(what, "the connection to PostgreSQL is closed");
  for (;;) {
    const int flushed = PQflush(conn_);
    if (flushed < 0) return status_from_connection(conn_, what);
    const bool sending = flushed == 1;
    if (!sending && !PQisBusy(conn_)) return Status();
    int timeout = -1;
    if (deadline_ms >= 0) {
      const int64_t left = deadline_ms - now_ms();
      if (left <= 0) {
        return give_up(what, "PostgreSQL did not answer within " + std::to_string(wait_limit_ms_) + " ms");
      }
      timeout = static_cast<int>(left);
    }
    pollfd p{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    const int ready = ::poll(&p, 1, timeout);
    if (ready < 0 && errno != EINTR) return give_up(what, std::string("poll: ") + std::strerror(errno));
    if (ready > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0 && PQconsumeInput(conn_) == 0) {
      return status_from_connection(conn_, what);
    }
  }
}

Result<pg_result*> Connection::next_result(const std::string& what, int64_t deadline_ms) {
  ORCH_RETURN_IF_ERROR(flush_and_wait(what, deadline_ms));
  return PQgetResult(conn_);
}

Result<Rows> Connection::finish_command(const std::string& what, int64_t deadline_ms) {
  Rows last;
  Status failed;
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(pg_result * result, next_result(what, deadline_ms));
    if (result == nullptr) break;
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE || status == PGRES_NONFATAL_ERROR) {
      if (failed.ok()) failed = status_from_result(result, what);
      PQclear(result);
    } else {
      last = Rows(result);
    }
    if (PQstatus(conn_) != CONNECTION_OK) break;  // no null will come
  }
  if (!failed.ok()) return failed;
  if (PQstatus(conn_) != CONNECTION_OK) return status_from_connection(conn_, what);
  return last;
}

Result<std::string> Connection::prepared(const std::string& what, const std::string& sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  std::string name = "orch_" + std::to_string(statements_.size());
  if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), 0, nullptr) == 0) return status_from_connection(conn_, what);
  ORCH_RETURN_IF_ERROR(finish_command(what, deadline()).status());
  statements_.emplace(sql, name);
  return name;
}

Result<Rows> Connection::exec(const std::string& what, const std::string& sql, const Params& params) {
  if (!params.status().ok()) return Status(params.status().code(), what + ": " + params.status().message());
  if (broken()) return give_up(what, "the connection to PostgreSQL was lost");
  ORCH_ASSIGN_OR_RETURN(std::string name, prepared(what, sql));
  std::vector<const char*> values = params.pointers();
  if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0) ==
      0) {
    return status_from_connection(conn_, what);
  }
  return finish_command(what, deadline());
}

Status Connection::exec_script(const std::string& what, const std::string& sql) {
  if (broken()) return give_up(what, "the connection to PostgreSQL was lost");
  if (PQsendQuery(conn_, sql.c_str()) == 0) return status_from_connection(conn_, what);
  return finish_command(what, deadline()).status();
}

Result<std::vector<Rows>> Connection::pipeline(const std::string& what, const std::vector<Command>& commands) {
  if (broken()) return give_up(what, "the connection to PostgreSQL was lost");
  // Everything is prepared before the pipeline starts: its results are then
  // exactly one per command.
  std::vector<std::string> names;
  names.reserve(commands.size());
  for (const Command& command : commands) {
    const Status& bad = command.params.status();
    if (!bad.ok()) return Status(bad.code(), what + ": " + bad.message());
    ORCH_ASSIGN_OR_RETURN(std::string name, prepared(what, command.sql));
    names.push_back(std::move(name));
  }
  if (PQenterPipelineMode(conn_) == 0) return status_from_connection(conn_, what);
  for (size_t i = 0; i < commands.size(); ++i) {
    std::vector<const char*> values = commands[i].params.pointers();
    if (PQsendQueryPrepared(conn_, names[i].c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr,
                            0) == 0) {
      return give_up(what, PQerrorMessage(conn_));
    }
  }
  if (PQpipelineSync(conn_) == 0) return give_up(what, PQerrorMessage(conn_));

  // Results: each command's, ended by a null, then the sync point. After a
  // failure the remaining commands report PGRES_PIPELINE_ABORTED.
  std::vector<Rows> results(commands.size());
  Status failed;
  size_t index = 0;
  for (;;) {
    Result<pg_result*> next = next_result(what, deadline());
    if (!next.ok()) {
      given_up_ = true;  // mid-pipeline: the connection's state is unknown
      return next.status();
    }
    pg_result* result = *next;
    if (result == nullptr) {
      if (++index > commands.size() + 1 || PQstatus(conn_) != CONNECTION_OK) {
        given_up_ = true;
        return failed.ok() ? status_from_connection(conn_, what) : failed;
      }
      continue;
    }
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(result);
      break;
    }
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
      if (failed.ok()) failed = status_from_result(result, what);
      PQclear(result);
    } else if (status == PGRES_PIPELINE_ABORTED || index >= commands.size()) {
      PQclear(result);
    } else {
      results[index] = Rows(result);
    }
  }
  if (PQexitPipelineMode(conn_) == 0) given_up_ = true;
  if (!failed.ok()) {
    reset_transaction();
    return failed;
  }
  return results;
}

void Connection::reset_transaction() {
  if (broken()) return;
  const PGTransactionStatusType state = PQtransactionStatus(conn_);
  if (state == PQTRANS_IDLE) return;
  if (state == PQTRANS_ACTIVE || state == PQTRANS_UNKNOWN) {
    given_up_ = true;
    return;
  }
  if (!exec_script("rolling back", "ROLLBACK").ok()) given_up_ = true;
}

}  // namespace orch::postgres
