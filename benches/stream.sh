#!/usr/bin/env bash
# The change stream at scale (issue 15): STREAMS open streams on one node, each
# following WATCH random users among USERS, with RATE status changes a second
# through the batch API; then the same clients polling every POLL_SECS. Prints
# delivery latency, server CPU and bytes moved for both, and RSS per idle stream
# (examples/stream_bench.rs does the measuring). Stops everything it started.
#
#   bash benches/stream.sh    # STREAMS=10000 USERS=10000 WATCH=10 RATE=1000 SECS=20 POLL_SECS=2 WORKERS=2
#   BASELINE=1 bash benches/stream.sh   # only: RSS of as many idle keep-alive connections
#   BIN=/tmp/presenced-old bash benches/stream.sh   # another build of the server, to compare
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-10000}
USERS=${USERS:-10000}
WATCH=${WATCH:-10}
RATE=${RATE:-1000}
SECS=${SECS:-20}
POLL_SECS=${POLL_SECS:-2}
WORKERS=${WORKERS:-2}
TOKEN=bench-ingest-token

# Both ends hold a socket per stream: raise the open-file limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((STREAMS + 1000)) ]; then
  echo "ulimit -n is $(ulimit -n): too low for $STREAMS streams" >&2; exit 1
fi
cargo build --release --quiet --bin presenced --example stream_bench

# shellcheck source=benches/processes.sh
source benches/processes.sh
port=$(free_port)
PRESENCED_INGEST_TOKEN=$TOKEN PRESENCED_SERVER_WORKERS=$WORKERS PRESENCED_LOG_LEVEL=warn \
  PRESENCED_STREAM_MAX_STREAMS=$((STREAMS + 100)) PRESENCED_STREAM_MAX_STREAMS_PER_USER=10000 \
  "${BIN:-./target/release/presenced}" --bind "127.0.0.1:$port" &
pids+=($!)
presenced_pid=$!
base="http://127.0.0.1:$port"
wait_up "$base/health"
python3 benches/seed.py "$base" "$TOKEN" "$USERS" "$USERS"

BENCH_BASE=$base BENCH_TOKEN=$TOKEN BENCH_PID=$presenced_pid STREAMS=$STREAMS USERS=$USERS \
  WATCH=$WATCH RATE=$RATE SECS=$SECS POLL_SECS=$POLL_SECS BASELINE=${BASELINE:-0} \
  timeout 600 ./target/release/examples/stream_bench
