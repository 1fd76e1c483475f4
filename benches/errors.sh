#!/usr/bin/env bash
# Error check under load: wrk polls users.presence for DURATION at CONNS connections
# while a writer keeps changing presence (so full answers are re-rendered), and the
# run fails unless wrk saw zero socket errors and zero non-2xx/3xx answers and the
# server's own /metrics count no 5xx. Starts and seeds presenced as benches/load.sh
# does (benches/serve.sh), stops everything it started.
#
#   bash benches/errors.sh        # DURATION=30s CONNS=64 THREADS=2 WORKERS=0 (= cores)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-0}
USERS=${USERS:-20000}
ONLINE=${ONLINE:-2000}
TOKEN=bench-ingest-token

# shellcheck source=benches/serve.sh
source benches/serve.sh

# A writer for as long as wrk runs: ten status changes every 100 ms, bounded by time.
seconds=${DURATION%s}
python3 - "$base" "$TOKEN" "$USERS" "$ONLINE" "$seconds" <<'PY' &
import json, sys, time, urllib.request
base, token, users, online, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
step, statuses, n = users // online, ["away", "busy", "online"], 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    ops = [{"op": "setStatus", "userId": "u%07d" % (((n + i) % online) * step), "status": statuses[(n + i) % 3]}
           for i in range(10)]
    req = urllib.request.Request(base + "/internal/v1/batch", json.dumps({"ops": ops}).encode(),
                                 {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    assert json.load(urllib.request.urlopen(req))["applied"] == len(ops)
    n += 10
    time.sleep(0.1)
print("writer: %d status changes" % n)
PY
pids+=($!)
writer=$!

echo "presenced $(git rev-parse --short HEAD 2>/dev/null || echo '?'): wrk -t$THREADS -c$CONNS -d$DURATION on the full users.presence answer ($USERS users, $ONLINE online), $(nproc) cores"
out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${auth[@]}" -H 'Accept-Encoding: gzip' \
  "$base/api/v1/users.presence")
echo "$out"
wait "$writer"

metrics=$(curl -fs "$base/metrics")
python3 - "$out" "$metrics" <<'PY'
import re, sys
out, metrics = sys.argv[1], sys.argv[2]
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
socket = sum(map(int, errors.groups())) if errors else 0
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
non_2xx = int(bad.group(1)) if bad else 0
server_5xx = sum(float(v) for v in re.findall(r'^presenced_http_requests_total\{[^}]*status="5\d\d"\} (\S+)$', metrics, re.M))
served = sum(float(v) for v in re.findall(r'^presenced_http_requests_total\{route="/api/v1/users.presence",status="200"\} (\S+)$', metrics, re.M))
rebuilds = re.search(r"^presenced_snapshot_rebuilds_total (\S+)$", metrics, re.M).group(1)
print("socket errors: %d, non-2xx/3xx: %d, server 5xx: %d, presence 200s counted by the server: %d, snapshot rebuilds: %s"
      % (socket, non_2xx, server_5xx, served, rebuilds))
if socket or non_2xx or server_5xx:
    sys.exit("FAIL: errors under load")
print("OK: zero errors, zero 5xx")
PY
