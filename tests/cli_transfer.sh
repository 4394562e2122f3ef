#!/usr/bin/env bash
# orch export / orch import through the program: a run made by `orch run` on
# one SQLite file moves to another, whose own export is then byte for byte
# the first one; importing it again skips everything.
#   cli_transfer.sh ORCH EXAMPLE_WORKFLOW
set -euo pipefail
orch="$1"
workflow="$2"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$orch" run "$workflow" --db "$dir/a.db" > /dev/null 2>&1
"$orch" export --db "$dir/a.db" --out "$dir/a.jsonl" 2> "$dir/export.log"
grep -q "exported 0 workflows, 0 workers, 1 runs" "$dir/export.log" || { cat "$dir/export.log"; exit 1; }
"$orch" import --db "$dir/b.db" "$dir/a.jsonl" 2> "$dir/import.log"
grep -q "imported 0 workflows, 0 workers, 1 runs" "$dir/import.log" || { cat "$dir/import.log"; exit 1; }
"$orch" export --db "$dir/b.db" > "$dir/b.jsonl" 2> /dev/null
cmp "$dir/a.jsonl" "$dir/b.jsonl"
"$orch" import --db "$dir/b.db" - < "$dir/a.jsonl" 2> "$dir/again.log"
grep -q "skipped: 0 workflows, 1 runs" "$dir/again.log" || { cat "$dir/again.log"; exit 1; }
# A cut file: everything but its last line is imported, and the exit status says so.
head -n -1 "$dir/a.jsonl" > "$dir/cut.jsonl"
if "$orch" import --db "$dir/c.db" "$dir/cut.jsonl" 2> "$dir/cut.log"; then
  echo "a cut export was accepted"; exit 1
fi
grep -q "cut short" "$dir/cut.log" || { cat "$dir/cut.log"; exit 1; }
echo "ok"
