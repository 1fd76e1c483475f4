#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: presenced against the
# static baseline serving the very same bytes (examples/static_baseline.rs).
#
# wrk's ratios move by ±0.1 between runs on a shared machine; an instruction count
# does not move at all for the same binary and input, so this is the measure to
# compare two builds by, in user space (the kernel's work is not counted; see
# BENCHMARKS.md for how the two relate). Each server runs under callgrind with one
# worker; one client sends the same request N1 times on one keep-alive connection,
# then N2 times, and the difference of the two counts over N2 - N1 requests is the
# cost of one, whatever start-up and idle work cost.
#
# Scenarios: quiet (a `from` poll with nothing new), 304 (revalidating the full
# snapshot), ids (100 ids), and quiet1000, ids1000 and busy1000: polls from a
# thousand clients each asking its own question (its own `from`; its own list, the
# same 100 users plus an id of its own that matches nobody; its own `from` before
# 100 changes), so that their answers are not shared as identical requests' are,
# and each is rendered afresh. fleet_delta, fleet_ids and fleet_since: a fleet
# of a thousand clients, each a user with its own login token (benches/fleet.py):
# each its own `from` in the second before 100 changes; each 100 random online
# ids; each its own cursor, one per change of the last thousand. The static
# server answers each with the bytes presenced gave it.
#
#   bash benches/instructions.sh                 # all nine
#   SCENARIOS=quiet KEEP=/tmp/cg bash benches/instructions.sh   # keep the dumps,
#       for callgrind_annotate or a per-function diff of two builds
#   PRESENCED=/tmp/old/presenced bash benches/instructions.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."

N1=${N1:-1000}
N2=${N2:-3000}
SCENARIOS=${SCENARIOS:-quiet quiet1000 304 ids ids1000 busy1000 fleet_delta fleet_ids fleet_since}
KEEP=${KEEP:-}
TOKEN=bench-ingest-token

if ! command -v valgrind >/dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
cargo build --release --quiet --bin presenced --example static_baseline
# shellcheck source=benches/processes.sh
source benches/processes.sh

# Starts "$@" under callgrind on $1's port; sets $cg_pid and $cg_out.
start_counted() {
  local port=$1; shift
  cg_out="$work/cg.$port"
  valgrind --tool=callgrind --callgrind-out-file="$cg_out" "$@" >"$work/valgrind.$port.log" 2>&1 &
  cg_pid=$!
  pids+=($cg_pid)
  wait_up "http://127.0.0.1:$port/health"
}

# Prints the instructions one request costs: $1 pid, $2 dump file prefix, $3 label,
# then keepalive.py's request arguments.
per_request() {
  local pid=$1 out=$2 label=$3; shift 3
  local counts=() n
  for n in "$N1" "$N2"; do
    callgrind_control --zero "$pid" >/dev/null 2>&1
    python3 benches/keepalive.py "$n" "$@"
    callgrind_control --dump="$label.$n" "$pid" >/dev/null 2>&1
    # The dump this request made names its trigger; its summary is the count since the zero.
    local dump
    dump=$(grep -l -x "desc: Trigger: dump $label.$n" "$out".*)
    counts+=("$(awk '/^(totals|summary):/ {print $2; exit}' "$dump")")
    [ -n "$KEEP" ] && mkdir -p "$KEEP" && cp "$dump" "$KEEP/$label.$n"
  done
  echo $(((counts[1] - counts[0]) / (N2 - N1)))
}

port=$(free_port)
PRESENCED_INGEST_TOKEN=$TOKEN PRESENCED_SERVER_WORKERS=1 PRESENCED_LOG_LEVEL=warn \
  start_counted "$port" "${PRESENCED:-./target/release/presenced}" --bind "127.0.0.1:$port"
presenced_pid=$cg_pid presenced_out=$cg_out
base="127.0.0.1:$port"
python3 benches/seed.py "http://$base" "$TOKEN" 2000 200 0 1000
# Waits for the next second and prints it: any millisecond of it is after all
# that came before.
next_second() {
  sleep "$(python3 -c 'import time; print(1.05 - time.time() % 1)')"
  date -u +%Y-%m-%dT%H:%M:%S
}
# A second before 100 visible changes (online users turn busy), and one after them.
busy_second=$(next_second)
next_second >/dev/null
before_busy=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://$base/internal/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])')
python3 - "http://$base" "$TOKEN" <<'PY'
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
ops = [{"op": "setStatus", "userId": "u%07d" % (i * 10), "status": "busy"} for i in range(100)]
req = urllib.request.Request(base + "/internal/v1/batch", json.dumps({"ops": ops}).encode(),
                             {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
assert json.load(urllib.request.urlopen(req))["applied"] == 100
PY
quiet_second=$(next_second)
quiet_from=$quiet_second.000Z
ids=$(python3 -c "print(','.join('u%07d' % (i * 10) for i in range(100)))")
auth=("X-User-Id: caller" "X-Auth-Token: bench-caller-token")
curl_auth=(-H "${auth[0]}" -H "${auth[1]}")
etag=$(curl -fs -D - -o /dev/null "${curl_auth[@]}" "http://$base/api/v1/users.presence" | awk 'tolower($1)=="etag:" {print $2}' | tr -d '\r')

declare -A line=(
  [quiet]="GET /api/v1/users.presence?from=$quiet_from"
  [quiet1000]="GET /api/v1/users.presence?from=$quiet_second.{i}Z"
  [304]="GET /api/v1/users.presence"
  [ids]="GET /api/v1/users.presence?ids=$ids"
  [ids1000]="GET /api/v1/users.presence?ids=nobody{i},$ids"
  [busy1000]="GET /api/v1/users.presence?from=$busy_second.{i}Z"
)
declare -A extra=([304]="If-None-Match: $etag")
# The static server answers a 304's request with the quiet body, as in load.sh.
declare -A body=([quiet]=quiet [quiet1000]=quiet [304]=quiet [ids]=ids [ids1000]=ids [busy1000]=busy)
mkdir "$work/bodies"
for name in quiet ids; do
  curl -fs "${curl_auth[@]}" "http://$base${line[$name]#GET }" -o "$work/bodies/$name"
done
curl -fs "${curl_auth[@]}" "http://$base/api/v1/users.presence?from=$busy_second.000Z" -o "$work/bodies/busy"
# The fleets: each request its own client; the static server gets their bodies.
declare -A fleet=(
  [fleet_delta]="delta $busy_second"
  [fleet_ids]="ids 10:200"
  [fleet_since]="since ${before_busy%.*}.$((16#${before_busy#*.} + 100 - 1000))"
)
for name in "${!fleet[@]}"; do
  [[ " $SCENARIOS " == *" $name "* ]] || continue
  read -r kind param <<<"${fleet[$name]}"
  python3 benches/fleet.py "$work/$name" "$kind" "http://$base" 1000 "$param"
  line[$name]="@$work/$name/requests.json"
  ln -s "$work/$name/bodies" "$work/bodies/$name"
  body[$name]=$name
done

echo
echo "presenced $(git rev-parse --short HEAD 2>/dev/null || echo '?'): instructions per request (callgrind, user space), $N2 - $N1 sequential keep-alive requests"
echo
echo "| scenario | presenced | static | ratio static / presenced |"
echo "|---|---|---|---|"
for name in $SCENARIOS; do
  headers=()
  [[ ${line[$name]} == @* ]] || headers=("${auth[@]}")
  [ -n "${extra[$name]:-}" ] && headers+=("${extra[$name]}")
  ours=$(per_request "$presenced_pid" "$presenced_out" "presenced.$name" "$base" "${line[$name]}" "${headers[@]}")
  sport=$(free_port)
  start_counted "$sport" ./target/release/examples/static_baseline "127.0.0.1:$sport" 1 "$work/bodies/${body[$name]}"
  theirs=$(per_request "$cg_pid" "$cg_out" "static.$name" "127.0.0.1:$sport" "${line[$name]}" "${headers[@]}")
  kill "$cg_pid"
  echo "| $name | $ours | $theirs | **$(python3 -c "print('%.2f' % ($theirs / $ours))")** |"
done
