// SPDX-License-Identifier: MIT
// A WorkerRegistry with the built-in protocols (HTTP and brokers), as the
// server sets it up.
#pragma once

#include <memory>

#include "orch/orch.h"

namespace orch::test {

inline std::shared_ptr<WorkerRegistry> builtin_registry(WorkerRegistryOptions options = {}) {
  auto registry = std::make_shared<WorkerRegistry>(std::move(options));
  Status status = register_builtin_protocols(*registry);
  if (!status.ok()) throw std::runtime_error(status.to_string());
  return registry;
}

}  // namespace orch::test
