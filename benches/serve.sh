# Sourced by the load scripts: installs wrk, builds release, starts presenced
# seeded with USERS users of which ONLINE are online plus a caller
# (X-User-Id: caller, X-Auth-Token: bench-caller-token), and stops everything
# it started on exit. Sets $work, $pids, $presenced_pid, $base and $auth.
#
# Needs: TOKEN, WORKERS, USERS, ONLINE; optional BUILD (extra cargo targets).

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# shellcheck disable=SC2086 # BUILD is a list of cargo arguments
cargo build --release --quiet --bin presenced ${BUILD:-}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() {
  for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server at $1 did not come up" >&2; return 1
}

port=$(free_port)
PRESENCED_INGEST_TOKEN=$TOKEN PRESENCED_SERVER_WORKERS=$WORKERS PRESENCED_LOG_LEVEL=warn \
  ./target/release/presenced --bind "127.0.0.1:$port" &
pids+=($!)
presenced_pid=$!
base="http://127.0.0.1:$port"
wait_up "$base/health"

# Seed through the batch API: users, connections for ONLINE of them, a caller.
# USERS=0 seeds nothing (the caller's script seeds its own).
[ "$USERS" -gt 0 ] && python3 - "$base" "$TOKEN" "$USERS" "$ONLINE" <<'PY'
import json, sys, urllib.request
base, token, users, online = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def batch(ops):
    req = urllib.request.Request(base + "/internal/v1/batch", json.dumps({"ops": ops}).encode(),
                                 {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(req))
    assert answer["applied"] == len(ops), answer["errors"][:3]
uid = lambda i: "u%07d" % i
step = users // online
ops = [{"op": "putUser", "userId": "caller", "username": "caller"},
       {"op": "addToken", "userId": "caller", "token": "bench-caller-token"}]
for i in range(users):
    ops.append({"op": "putUser", "userId": uid(i), "username": "user.%d" % i, "name": "User Number %d" % i, "utcOffset": i % 5})
    if i % step == 0:
        ops.append({"op": "putConnection", "connectionId": "c%d" % i, "userId": uid(i), "status": "online"})
    if len(ops) >= 5000:
        batch(ops); ops = []
batch(ops)
PY

auth=(-H "X-User-Id: caller" -H "X-Auth-Token: bench-caller-token")
