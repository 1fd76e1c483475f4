#!/usr/bin/env bash
# Fuzzes presenced's parsers of untrusted input for a bounded time each:
#   from_date       the `from` parameter of users.presence
#   presence_query  the whole query string (`ids` forms, `since`, `from`)
#   ingest_body     internal API bodies and batch rows, applied to a real store
# Usage: bash tests/fuzz/run.sh [SECONDS_PER_TARGET] (default 60).
# Needs cargo-fuzz (installed here if missing). The stable toolchain is enough:
# RUSTC_BOOTSTRAP lets it take cargo-fuzz's -Z flags, and the sanitizer is off
# (no unsafe code here for it to watch; a panic is what a finding looks like).
# Each run starts from the small hand-written seeds in seeds/ plus what earlier
# runs on this machine found (target/fuzz-corpus, not committed); a crash stops
# the run with the failing input saved under tests/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in from_date presence_query ingest_body; do
  corpus=../../target/fuzz-corpus/$target
  mkdir -p "$corpus"
  echo "== $target, ${seconds}s"
  log=../../target/fuzz-$target.log
  status=0
  cargo fuzz run --fuzz-dir . --sanitizer none "$target" "$corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^Done|^stat::(number_of_executed_units|new_units_added)|panicked|SUMMARY|Test unit written" "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "FAILED: $target exited with $status; the input is under tests/fuzz/artifacts/$target, the log in target/fuzz-$target.log" >&2
    exit 1
  fi
done
echo "fuzzing: no crash in ${seconds}s per target"
