#!/usr/bin/env bash
# Builds orch and starts the main job. Installs what it needs first.
# The HTTP server (orch serve, embedded SQLite, example workflows) is not built
# yet; until it is, this runs the embedded-engine example (a three-node loop).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target hello_graph
exec build/examples/hello_graph "$@"
