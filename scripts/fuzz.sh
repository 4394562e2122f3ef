#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a
# bounded time on a scratch copy of its seed corpus (fuzz/corpus/<target>).
#   FUZZ_SECONDS=30 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
seconds="${FUZZ_SECONDS:-30}"
build=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DORCH_BUILD_FUZZERS=ON -DORCH_BUILD_TESTS=OFF -DORCH_BUILD_EXAMPLES=OFF -DORCH_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "${ORCH_JOBS:-$(nproc)}" --target fuzz_json fuzz_workflow fuzz_workflow_graph fuzz_template fuzz_http_body fuzz_packed_value
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
status=0
for target in json workflow workflow_graph template http_body packed_value; do
  work="$build/corpus-$target"
  rm -rf "$work" && mkdir -p "$work" && cp fuzz/corpus/$target/* "$work/"
  log="$build/fuzz-$target.log"
  if "$build/fuzz/fuzz_$target" "$work" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
       -print_final_stats=1 >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    echo "fuzz $target: ok, $execs executions in ${seconds}s"
  else
    echo "fuzz $target: FAILED (see $log)"; tail -40 "$log"; status=1
  fi
done
exit $status
