#!/usr/bin/env bash
# The main job: builds orch and starts `orch serve` with an embedded SQLite
# database and the example workflows (examples/workflows, hot-reloaded).
#   scripts/serve.sh                 # http://127.0.0.1:8080, db in ~/.orch/orch.db
#   ORCH_PORT=9000 scripts/serve.sh --token secret
# Extra arguments go to `orch serve` (see `orch --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target orch_cli
home="${ORCH_HOME:-$HOME/.orch}"
mkdir -p "$home"
exec build/server/orch serve --host "${ORCH_HOST:-127.0.0.1}" --port "${ORCH_PORT:-8080}" \
  --db "${ORCH_DB:-$home/orch.db}" --workflows-dir examples/workflows "$@"
