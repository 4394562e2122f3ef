#!/usr/bin/env bash
# `orch run` with a worker given on the command line: review_loop runs end to
# end against examples/mock_worker (the README's two commands).
#   cli_run_worker.sh ORCH MOCK_WORKER WORKFLOW
set -euo pipefail
orch="$1" mock="$2" workflow="$3"
portfile=$(mktemp)
"$mock" --port 0 >"$portfile" 2>/dev/null &
worker=$!
trap 'kill $worker 2>/dev/null || true; rm -f "$portfile"' EXIT
for _ in $(seq 200); do  # it prints its port once it listens
  [ -s "$portfile" ] && break
  sleep 0.05
done
port=$(head -1 "$portfile")
out=$("$orch" run "$workflow" --db :memory: --input '{"topic": "graphs"}' \
      --worker "http://127.0.0.1:$port/webhook,tags=writer|reviewer" 2>/tmp/orch-run-worker.$$.err) || {
  cat /tmp/orch-run-worker.$$.err; rm -f /tmp/orch-run-worker.$$.err; exit 1; }
rm -f /tmp/orch-run-worker.$$.err
echo "$out"
# One revision, then approval: two reviews in the state.
echo "$out" | grep -q '"verdict":"approve"'
echo "$out" | grep -q '"reviews":\["please revise"\]'
