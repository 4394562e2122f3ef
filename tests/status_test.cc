// SPDX-License-Identifier: MIT
#include "catch.h"
#include "orch/status.h"

using orch::Result;
using orch::Status;
using orch::StatusCode;

namespace {
Result<int> half(int x) {
  if (x % 2 != 0) return Status::invalid_argument("odd");
  return x / 2;
}
Result<int> quarter(int x) {
  ORCH_ASSIGN_OR_RETURN(int h, half(x));
  ORCH_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}
Status check_even(int x) {
  ORCH_RETURN_IF_ERROR(half(x).status());
  return Status();
}
}  // namespace

TEST_CASE("status ok and error", "[status]") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.to_string() == "OK");
  Status nf = Status::not_found("run x");
  CHECK_FALSE(nf.ok());
  CHECK(nf.code() == StatusCode::kNotFound);
  CHECK(nf.to_string() == "not_found: run x");
  CHECK(Status(StatusCode::kOk, "ignored").message().empty());
  CHECK(orch::status_code_name(StatusCode::kResourceExhausted) == "resource_exhausted");
}

TEST_CASE("result carries a value or an error", "[status]") {
  CHECK(quarter(8).ok());
  CHECK(*quarter(8) == 2);
  Result<int> r = quarter(6);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(r.status().message() == "odd");
  CHECK(r.value_or(-1) == -1);
  CHECK(check_even(4).ok());
  CHECK(check_even(3).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("result of move-only type", "[status]") {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  REQUIRE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  CHECK(*p == 7);
}
