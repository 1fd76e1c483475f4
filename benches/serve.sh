# Sourced by the load scripts: installs wrk, builds release, starts presenced
# seeded with USERS users of which ONLINE are online plus a caller
# (X-User-Id: caller, X-Auth-Token: bench-caller-token), and stops everything
# it started on exit. Sets $work, $pids, $presenced_pid, $base and $auth.
#
# Needs: TOKEN, WORKERS, USERS, ONLINE; optional BUILD (extra cargo targets),
# FLEET (users f0000.. with their own tokens, see benches/seed.py), PRESENCED
# (the server binary, to measure another build; default this one's release).

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# shellcheck disable=SC2086 # BUILD is a list of cargo arguments
cargo build --release --quiet --bin presenced ${BUILD:-}

# shellcheck source=benches/processes.sh
source benches/processes.sh

port=$(free_port)
PRESENCED_INGEST_TOKEN=$TOKEN PRESENCED_SERVER_WORKERS=$WORKERS PRESENCED_LOG_LEVEL=warn \
  "${PRESENCED:-./target/release/presenced}" --bind "127.0.0.1:$port" &
pids+=($!)
presenced_pid=$!
base="http://127.0.0.1:$port"
wait_up "$base/health"

# Seed through the batch API: users, connections for ONLINE of them, a caller.
# USERS=0 seeds nothing (the caller's script seeds its own).
[ "$USERS" -gt 0 ] && python3 benches/seed.py "$base" "$TOKEN" "$USERS" "$ONLINE" 0 "${FLEET:-0}"

auth=(-H "X-User-Id: caller" -H "X-Auth-Token: bench-caller-token")
