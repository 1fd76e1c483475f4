#!/usr/bin/env bash
# Cluster benchmarks (issue 6): read throughput of a replica as a ratio to a
# single process, replication lag, and batch write throughput.
#
# Starts its own redis-server (no persistence) on a free loopback port, one
# single-process presenced (S) and two replicas (A, B) of one cluster, each
# with WORKERS HTTP workers, seeds USERS users (ONLINE online) into S and
# through A into the cluster, then:
#   1. runs the very same wrk command against S, A and B, ROUNDS times,
#      alternating, and prints the median rps of each and A/S, B/S;
#   2. measures replication lag A -> B at 1000 and 10000 writes/s
#      (examples/cluster_lag.rs);
#   3. measures write throughput through the batch API on A.
# Stops everything it started.
#
#   bash benches/cluster.sh      # DURATION=5s ROUNDS=3 CONNS=32 WORKERS=1 USERS=100000 ONLINE=10000
#                                # PARTS="reads lag batch" RATES="1000 10000" LAG_SECS=5
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-1}
USERS=${USERS:-100000}
ONLINE=${ONLINE:-10000}
LAG_SECS=${LAG_SECS:-5}
PARTS=${PARTS:-reads lag batch}
RATES=${RATES:-1000 10000}
part() { [[ " $PARTS " == *" $1 "* ]]; }
TOKEN=bench-ingest-token

cargo build --release --quiet --bin presenced --example cluster_lag

# shellcheck source=benches/processes.sh
source benches/processes.sh

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

start() { # name, extra env...
  local port; port=$(free_port)
  env PRESENCED_INGEST_TOKEN=$TOKEN PRESENCED_SERVER_WORKERS=$WORKERS PRESENCED_LOG_LEVEL=warn "${@:2}" \
    ./target/release/presenced --bind "127.0.0.1:$port" >"$work/$1.log" 2>&1 &
  pids+=($!)
  eval "$1=http://127.0.0.1:$port"
}
start S
start A PRESENCED_CLUSTER_REDIS_URL="redis://127.0.0.1:$redis_port"
start B PRESENCED_CLUSTER_REDIS_URL="redis://127.0.0.1:$redis_port"
for base in "$S" "$A" "$B"; do wait_up "$base/ready"; done

seed() { python3 benches/seed.py "$1" "$TOKEN" "$USERS" "$ONLINE" 1000; }
seed "$S"
seed "$A"
want=$((USERS + 1001))
for _ in $(seq 600); do
  n=$(curl -fs -H "Authorization: Bearer $TOKEN" "$B/internal/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["users"])')
  [ "$n" = "$want" ] && break; sleep 0.1
done
[ "$n" = "$want" ] || { echo "B holds $n users, not $want" >&2; exit 1; }

auth=(-H "X-User-Id: caller" -H "X-Auth-Token: bench-caller-token")
ids=$(python3 -c "print(','.join('u%07d' % (i * ($USERS // $ONLINE)) for i in range(100)))")
declare -A query=([full]="" [ids]="ids=$ids")
samples=
rps() { # base, query
  wrk -t1 -c"$CONNS" -d"$DURATION" "${auth[@]}" "$1/api/v1/users.presence?$2" | awk '/Requests\/sec/ {print $2}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if part reads; then
echo "## read throughput: wrk -t1 -c$CONNS -d$DURATION, $WORKERS worker(s) each, median of $ROUNDS"
echo
echo "| scenario | single rps | replica A rps | replica B rps | A/single | B/single |"
echo "|---|---|---|---|---|---|"
for name in full ids; do
  s=(); a=(); b=()
  for _ in $(seq "$ROUNDS"); do
    s+=("$(rps "$S" "${query[$name]}")")
    a+=("$(rps "$A" "${query[$name]}")")
    b+=("$(rps "$B" "${query[$name]}")")
  done
  ms=$(median "${s[@]}"); ma=$(median "${a[@]}"); mb=$(median "${b[@]}")
  echo "| $name | $ms | $ma | $mb | $(python3 -c "print(f'{$ma/$ms:.2f}')") | $(python3 -c "print(f'{$mb/$ms:.2f}')") |"
  samples+="$name: single ${s[*]}; A ${a[*]}; B ${b[*]}"$'\n'
done
echo
echo "every run (rps, in order):"
printf '%s' "$samples"
echo
fi
if part lag; then
echo "## replication lag A -> B"
for rate in $RATES; do
  ./target/release/examples/cluster_lag lag "$A" "$B" "$rate" "$LAG_SECS" "$TOKEN"
done
echo
fi
if part batch; then
echo "## batch writes through A"
./target/release/examples/cluster_lag batch "$A" 100000 "$TOKEN"
echo
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), redis $(redis-server --version | awk '{print $3}')"
