// SPDX-License-Identifier: MIT
//
// Status and Result<T>: how every fallible orch call reports failure.
//
// orch never lets an exception cross the library boundary. A call that can fail
// returns a Status (nothing else to return) or a Result<T> (a T or an error).
// An OK Status holds no message and costs no allocation.
//
// Thread-safety: Status and Result are plain values. Distinct objects may be used
// from different threads; one object needs external synchronization if it is
// written while another thread reads it.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "orch/export.h"

namespace orch {

// Error codes. The server maps them to HTTP statuses in one place.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong (400)
  kNotFound,            // a named thing does not exist (404)
  kAlreadyExists,       // creating something whose id is taken (409)
  kFailedPrecondition,  // the thing is in the wrong state for the call (409)
  kAborted,             // a concurrency conflict; the caller may retry (409)
  kUnavailable,         // a transient failure: retry later (503)
  kDeadlineExceeded,    // a deadline passed before the work finished (504)
  kCancelled,           // the work was cancelled (499)
  kResourceExhausted,   // a limit was hit: size, rate, capacity (429/413)
  kUnimplemented,       // not supported (501)
  kInternal,            // a broken invariant or an unexpected failure (500)
};

// Returns the snake_case name of `code`, e.g. "invalid_argument".
ORCH_EXPORT std::string_view status_code_name(StatusCode code);

// Exported by attribute: ORCH_EXPORT (a GNU attribute) cannot follow [[nodiscard]].
class [[nodiscard, gnu::visibility("default")]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);

  static Status ok_status() { return Status(); }
  static Status invalid_argument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status not_found(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status already_exists(std::string msg) { return {StatusCode::kAlreadyExists, std::move(msg)}; }
  static Status failed_precondition(std::string msg) { return {StatusCode::kFailedPrecondition, std::move(msg)}; }
  static Status aborted(std::string msg) { return {StatusCode::kAborted, std::move(msg)}; }
  static Status unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status deadline_exceeded(std::string msg) { return {StatusCode::kDeadlineExceeded, std::move(msg)}; }
  static Status cancelled(std::string msg) { return {StatusCode::kCancelled, std::move(msg)}; }
  static Status resource_exhausted(std::string msg) { return {StatusCode::kResourceExhausted, std::move(msg)}; }
  static Status unimplemented(std::string msg) { return {StatusCode::kUnimplemented, std::move(msg)}; }
  static Status internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "OK", or "<code name>: <message>".
  std::string to_string() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }
  friend bool operator!=(const Status& a, const Status& b) { return !(a == b); }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a T or a non-OK Status. Shaped like absl::StatusOr / std::expected so
// it can become an alias later. Accessing the value of an error Result is a bug
// (asserts in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  // Implicit from a value and from an error status, so `return value;` and
  // `return Status::not_found(...)` both work.
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!status_.ok() && "Result constructed from an OK Status without a value");
    if (status_.ok()) status_ = Status::internal("Result constructed from OK status without value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? *value_ : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace orch

// Returns early from the enclosing function with the status of `expr` if it is
// not OK. Works in functions returning Status or Result<T>.
#define ORCH_RETURN_IF_ERROR(expr)                \
  do {                                            \
    ::orch::Status orch_status_ = (expr);         \
    if (!orch_status_.ok()) return orch_status_;  \
  } while (0)

#define ORCH_CONCAT_INNER_(a, b) a##b
#define ORCH_CONCAT_(a, b) ORCH_CONCAT_INNER_(a, b)

// `ORCH_ASSIGN_OR_RETURN(auto x, make_x());` declares x from a Result, or returns
// its error status.
#define ORCH_ASSIGN_OR_RETURN(lhs, expr) \
  ORCH_ASSIGN_OR_RETURN_IMPL_(ORCH_CONCAT_(orch_result_, __LINE__), lhs, expr)
#define ORCH_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
