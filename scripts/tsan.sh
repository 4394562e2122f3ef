#!/usr/bin/env bash
# Builds the concurrency-heavy test programs with ThreadSanitizer and runs them.
#   scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
build=build-tsan
# (-Werror is left off: GCC warns that TSan cannot see atomic_thread_fence.)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DORCH_SANITIZE=thread \
  -DORCH_BUILD_EXAMPLES=OFF -DORCH_BUILD_BENCH=OFF >/dev/null
# (worker_http_test is left to the other passes: its deadline checks are too
# tight for TSan's slowdown.)
targets=(engine_test engine_async_write_test worker_registry_test store_conformance_test sqlite_store_test server_http_test)
cmake --build "$build" -j "${ORCH_JOBS:-$(nproc)}" --target "${targets[@]}" 2>&1 | grep -v "Wtsan\|atomic_thread_fence\|inlined from\|In function\|^ *|\|^ *[0-9]* |\|~\|\^" || true
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan.supp}"
pattern="^($(IFS='|'; echo "${targets[*]}")):"
ctest --test-dir "$build" --output-on-failure -j "${ORCH_JOBS:-$(nproc)}" -R "$pattern"
