// SPDX-License-Identifier: MIT
//
// The umbrella header: everything a host needs to embed orch.
#pragma once

#include "orch/async_workers.h"
#include "orch/clock.h"
#include "orch/id.h"
#include "orch/status.h"
#include "orch/value.h"
#include "orch/engine.h"
#include "orch/state.h"
#include "orch/sqlite_store.h"
#include "orch/state_path.h"
#include "orch/store.h"
#include "orch/template.h"
#include "orch/version.h"
#include "orch/worker.h"
#include "orch/workers.h"
#include "orch/workflow.h"
