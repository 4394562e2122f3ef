#!/usr/bin/env bash
# `orch run` with a worker given on the command line: review_loop runs end to
# end against examples/mock_worker (the README's two commands).
#   cli_run_worker.sh ORCH MOCK_WORKER WORKFLOW
set -euo pipefail
orch="$1" mock="$2" workflow="$3"
port=$(( 20000 + RANDOM % 20000 ))
"$mock" --port "$port" 2>/dev/null &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.05
done
out=$("$orch" run "$workflow" --db :memory: --input '{"topic": "graphs"}' \
      --worker "http://127.0.0.1:$port/webhook,tags=writer|reviewer" 2>/tmp/orch-run-worker.$$.err) || {
  cat /tmp/orch-run-worker.$$.err; rm -f /tmp/orch-run-worker.$$.err; exit 1; }
rm -f /tmp/orch-run-worker.$$.err
echo "$out"
# One revision, then approval: two reviews in the state.
echo "$out" | grep -q '"verdict":"approve"'
echo "$out" | grep -q '"reviews":\["please revise"\]'
