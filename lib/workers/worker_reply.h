// SPDX-License-Identifier: MIT
//
// The failed WorkerReply every worker protocol answers with (not installed).
#pragma once

#include <utility>

#include "orch/dispatcher.h"

namespace orch::internal {

inline WorkerReply failure(Status status, bool retryable) {
  WorkerReply reply;
  reply.status = std::move(status);
  reply.retryable = retryable;
  return reply;
}

}  // namespace orch::internal
