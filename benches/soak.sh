#!/usr/bin/env bash
# Soak: SECS seconds of connection churn (opened, refreshed, closed, and abandoned
# to expire) and status changes through the batch API, with POLLERS clients
# following along by `since` and If-None-Match. Prints the server's RSS and its
# log every 10 s, then checks: no request failed, the log never exceeded its
# capacity, RSS plateaued (second half's peak within 5% of the first's), and every
# poller's mirror equals a fresh snapshot. Exits non-zero if a check fails.
# The driver is examples/soak.rs; the server is started as benches/load.sh does.
#
#   bash benches/soak.sh     # SECS=180 SOAK_USERS=10000 POLLERS=8 TTL=5 CAPACITY=50000
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-180}
POLLERS=${POLLERS:-8}
TTL=${TTL:-5}
CAPACITY=${CAPACITY:-50000}
TOKEN=bench-ingest-token
WORKERS=${WORKERS:-1}
USERS=0 # serve.sh seeds nothing; the driver seeds SOAK_USERS
ONLINE=0
BUILD="--example soak"
# A short TTL so abandoned connections expire during the run, and a log small
# enough that the churn fills it: eviction, not the window, bounds it here.
export PRESENCED_PRESENCE_CONNECTION_TTL_SECS=$TTL
export PRESENCED_PRESENCE_CHANGELOG_CAPACITY=$CAPACITY

# shellcheck source=benches/serve.sh
source benches/serve.sh

echo "presenced $(git rev-parse --short HEAD 2>/dev/null || echo '?'): ${SECS}s soak, ${SOAK_USERS:-10000} users, $POLLERS pollers, TTL ${TTL}s, log capacity $CAPACITY, $WORKERS worker(s), $(nproc) cores"
SOAK_BASE=$base SOAK_TOKEN=$TOKEN SOAK_PID=$presenced_pid SOAK_SECS=$SECS \
  SOAK_POLLERS=$POLLERS SOAK_CAPACITY=$CAPACITY ./target/release/examples/soak
