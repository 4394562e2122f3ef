#!/usr/bin/env bash
# Builds orch and runs the whole test suite. Installs what it needs first.
#   scripts/test.sh                       # normal build in build/
#   ORCH_SANITIZE=address,undefined scripts/test.sh   # sanitizer build in build-sanitize/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

sanitize="${ORCH_SANITIZE:-}"
build_dir="${ORCH_BUILD_DIR:-build}"
build_type="${ORCH_BUILD_TYPE:-RelWithDebInfo}"
if [ -n "$sanitize" ]; then
  build_dir="${ORCH_BUILD_DIR:-build-sanitize}"
  build_type="${ORCH_BUILD_TYPE:-Debug}"
fi
jobs="${ORCH_JOBS:-$(nproc)}"

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" \
  -DORCH_SANITIZE="$sanitize" -DORCH_WARNINGS_AS_ERRORS=ON >/dev/null
cmake --build "$build_dir" -j "$jobs"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp}"
# Tests append their figures (kills survived, faults injected...) to one file.
rm -f "$build_dir/figures.txt"
status=0
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" ${ORCH_CTEST_ARGS:-} || status=$?
if [ -s "$build_dir/figures.txt" ]; then
  echo "== figures =="
  sort "$build_dir/figures.txt"
fi
exit $status
