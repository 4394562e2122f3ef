// SPDX-License-Identifier: MIT
#include "orch/version.h"

namespace orch {
const char* version() { return ORCH_VERSION_STRING; }
}  // namespace orch
