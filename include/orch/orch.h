// SPDX-License-Identifier: MIT
//
// The umbrella header: everything a host needs to embed orch.
#pragma once

#include "orch/clock.h"
#include "orch/id.h"
#include "orch/status.h"
#include "orch/value.h"
#include "orch/version.h"
