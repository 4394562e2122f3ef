#!/usr/bin/env bash
# Runs every benchmark and writes bench/results.jsonl (one JSON object per line).
#   bench/run.sh            # release build in build-bench/, all scenarios
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DORCH_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j "$(nproc)" --target bench_engine bench_server orch_cli
out=bench/results.jsonl
: > "$out.tmp"
# 11 repetitions after the warm-up: this machine's speed drifts, and a median
# of 11 moves less than one of 5.
build-bench/bench/bench_engine --reps 11 "$@" | tee -a "$out.tmp"
build-bench/bench/bench_server build-bench/server/orch --runs 100 | tee -a "$out.tmp"
# A worker that takes 15 ms per call, as a model would: 100 runs in flight
# then bound the rate at 100 / 15 ms = 6667 node executions/s, and the CPU
# has room, so the added latency is orch's own.
build-bench/bench/bench_server build-bench/server/orch --runs 100 --worker-ms 15 | tee -a "$out.tmp"
# PostgreSQL (issue #21; a private server started by the benchmark): one
# orch serve, then three on the same database with the runs spread across
# them (on this 2-core machine they share the CPU: the figure shows what
# coordinating costs, not what more machines would add).
for instances in 1 3; do
  build-bench/bench/bench_server build-bench/server/orch --db postgres --instances "$instances" --runs 100 \
    --worker-ms 15 | tee -a "$out.tmp"
done
# Runs of examples/workflows/hello (no worker): what each run leaves on disk
# (db_bytes_per_run) and the write-ahead log's peak and final size (issue #25).
build-bench/bench/bench_server build-bench/server/orch --workflow hello --seconds 10 | tee -a "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
