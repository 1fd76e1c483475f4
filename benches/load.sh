#!/usr/bin/env bash
# Load test of users.presence against a static baseline serving the very same bytes.
#
# Builds release, starts presenced with USERS users of which ONLINE are online and
# BUSY recent changes (seeded through the batch API), captures each scenario's
# response, serves those bytes from examples/static_baseline.rs (same worker count),
# and runs the very same wrk command (URL, headers) against both. Prints a markdown table: rps, p50,
# p99 and the ratio to the static baseline. Stops everything it started.
#
# Each scenario runs ROUNDS times, alternating presenced and the baseline, and the
# median run of each is reported: the machine is shared and single runs are noisy.
#
#   bash benches/load.sh            # DURATION=5s ROUNDS=3 CONNS=32 WORKERS=1 THREADS=1
#   SCENARIOS="quiet 304" bash benches/load.sh   # some rows only (quiet busy full ids 304
#       fleet-delta fleet-ids fleet-since)
#
# The fleet rows are FLEET distinct clients (benches/fleet.py), each a user with
# its own login token, sent in turn by a wrk Lua script: fleet-delta, each its
# own `from` within the second before the BUSY changes; fleet-ids, each 100
# random online ids; fleet-since, distinct cursors, one per change of the last
# FLEET changes (the last seeded users, then the BUSY changes). The static
# baseline runs the very same script and answers each request with the bytes
# presenced gave it (`X-Body`). wrk's Lua costs wrk time per request (see
# BENCHMARKS.md), which is why the baseline must go through it too.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1}
USERS=${USERS:-100000}
ONLINE=${ONLINE:-10000}
BUSY=${BUSY:-300}
FLEET=${FLEET:-1000}
SCENARIOS=${SCENARIOS:-quiet busy full ids 304 fleet-delta fleet-ids fleet-since}
TOKEN=bench-ingest-token

BUILD="--example static_baseline"
# shellcheck source=benches/serve.sh
source benches/serve.sh
# Waits for the next second and prints it: any millisecond of it is after all
# that came before.
next_second() {
  sleep "$(python3 -c 'import time; print(1.05 - time.time() % 1)')"
  date -u +%Y-%m-%dT%H:%M:%S
}
# A whole second before the BUSY changes: the fleet's `from`s are in it.
fleet_second=$(next_second)
next_second >/dev/null
cursor=$(curl -fs -H "Authorization: Bearer $TOKEN" "$base/internal/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])')
# BUSY visible changes (online users turn busy), then a quiet point in time.
python3 - "$base" "$TOKEN" "$USERS" "$ONLINE" "$BUSY" <<'PY'
import json, sys, urllib.request
base, token, users, online, busy = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
step = users // online
ops = [{"op": "setStatus", "userId": "u%07d" % (i * step), "status": "busy", "statusText": "in a meeting"} for i in range(busy)]
req = urllib.request.Request(base + "/internal/v1/batch", json.dumps({"ops": ops}).encode(),
                             {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
assert json.load(urllib.request.urlopen(req))["applied"] == busy
PY
sleep 0.01
quiet_from=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
ids=$(python3 -c "print(','.join('u%07d' % (i * ($USERS // $ONLINE)) for i in range(100)))")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$presenced_pid/status")

declare -A query=(
  [quiet]="from=$quiet_from"
  [busy]="since=$cursor"
  [full]=""
  [ids]="ids=$ids"
)
mkdir "$work/bodies"
for name in quiet busy full ids; do
  curl -fs "${auth[@]}" "$base/api/v1/users.presence?${query[$name]}" -o "$work/bodies/$name"
done
etag=$(curl -fs -D - -o /dev/null "${auth[@]}" "$base/api/v1/users.presence" | awk 'tolower($1)=="etag:" {print $2}' | tr -d '\r')
[ "$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -H "If-None-Match: $etag" "$base/api/v1/users.presence")" = 304 ]

# The fleets, their requests and presenced's answers to them.
epoch=${cursor%.*}
seq=$((16#${cursor#*.}))
declare -A fleet_param=(
  [fleet-delta]="$fleet_second"
  [fleet-ids]="$((USERS / ONLINE)):$ONLINE"
  [fleet-since]="$epoch.$((seq + BUSY - FLEET))"
)
for name in fleet-delta fleet-ids fleet-since; do
  [[ " $SCENARIOS " == *" $name "* ]] || continue
  python3 benches/fleet.py "$work/$name" "${name#fleet-}" "$base" "$FLEET" "${fleet_param[$name]}"
  ln -s "$work/$name/bodies" "$work/bodies/$name"
done

# Starts the static baseline serving one captured body (or a fleet's); sets $sbase.
static_pid=
serve_static() {
  [ -n "$static_pid" ] && kill "$static_pid" 2>/dev/null && wait "$static_pid" 2>/dev/null || true
  local sport
  sport=$(free_port)
  ./target/release/examples/static_baseline "127.0.0.1:$sport" "$WORKERS" "$work/bodies/$1" &
  static_pid=$!
  pids+=($static_pid)
  sbase="http://127.0.0.1:$sport"
  wait_up "$sbase/health"
}

# Runs wrk and prints "rps p50 p99 errors".
run() {
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" 2>&1 | python3 -c '
import re, sys
out = sys.stdin.read()
def ms(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
n = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
print("%.0f %.3f %.3f %d" % (rps, ms(50), ms(99), n))'
}

echo
echo "presenced $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $USERS users, $ONLINE online, $BUSY busy; wrk -t$THREADS -c$CONNS -d$DURATION, median of $ROUNDS alternating runs; $WORKERS worker(s) each; $(nproc) cores"
echo "server RSS after seeding: $((rss_kb / 1024)) MiB ($((rss_kb * 1024 / USERS)) bytes per user)"
echo
echo "| scenario | body bytes (a fleet's mean) | presenced rps | p50 ms | p99 ms | static rps | p50 ms | p99 ms | ratio | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|"
# Prints the median (by rps) of "rps p50 p99 errors" lines on stdin, errors summed.
median() {
  python3 -c '
import sys
runs = sorted((l.split() for l in sys.stdin if l.strip()), key=lambda r: float(r[0]))
mid = runs[len(runs) // 2]
print(mid[0], mid[1], mid[2], sum(int(r[3]) for r in runs))'
}

row() { # scenario, label, body name, then the wrk arguments, the URL last
  [[ " $SCENARIOS " == *" $1 "* ]] || return 0
  local label=$2 body=$3; shift 3
  local args=("$@")
  local url=${args[-1]}
  serve_static "$body"
  # The very same command against the baseline: same path, query and headers.
  local sargs=("${args[@]}")
  sargs[-1]=${url/$base/$sbase}
  local ours="" theirs=""
  for _ in $(seq "$ROUNDS"); do
    ours+="$(run "${auth[@]}" "${args[@]}")"$'\n'
    theirs+="$(run "${auth[@]}" "${sargs[@]}")"$'\n'
  done
  read -r prps pp50 pp99 perr < <(printf '%s' "$ours" | median)
  read -r srps sp50 sp99 serr < <(printf '%s' "$theirs" | median)
  local ratio
  ratio=$(python3 -c "print('%.2f' % ($prps / $srps))")
  local bytes
  bytes=$(find -L "$work/bodies/$body" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s / NR }')
  echo "| $label | $bytes | $prps | $pp50 | $pp99 | $srps | $sp50 | $sp99 | **$ratio** | $((perr + serr)) |"
}
row quiet "quiet delta (from, no changes)" quiet "$base/api/v1/users.presence?${query[quiet]}"
row busy "busy delta (since, $BUSY changed)" busy "$base/api/v1/users.presence?${query[busy]}"
row full "full snapshot ($ONLINE online)" full "$base/api/v1/users.presence"
row ids "ids=100" ids "$base/api/v1/users.presence?${query[ids]}"
row 304 "304 revalidation of the full snapshot (static: the quiet body)" quiet -H "If-None-Match: $etag" "$base/api/v1/users.presence"
row fleet-delta "fleet delta ($FLEET clients, own from, $BUSY changed)" fleet-delta -s "$work/fleet-delta/fleet.lua" "$base/"
row fleet-ids "fleet ids ($FLEET clients, 100 random online ids each)" fleet-ids -s "$work/fleet-ids/fleet.lua" "$base/"
row fleet-since "fleet since ($FLEET clients, distinct cursors over the last $FLEET changes)" fleet-since -s "$work/fleet-since/fleet.lua" "$base/"
