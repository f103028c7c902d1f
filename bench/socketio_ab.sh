#!/usr/bin/env bash
# A/B of Socket.IO fan-out: several servers measured one after the other on one private
# redis-server, the list repeated AB_ROUNDS times (so the binaries alternate and meet the same
# machine load), then the median of each. A server is a switchboard binary's path or `node`
# (the seeds' peer, bench/peers/node-socketio), either after settings of its own for that
# server and the driver ("STATUS_FORMAT=agent build-rel/switchboard"). Same
# driver and load as bench/socketio_fanout.sh (many rooms: ROUNDS × N status PUBLISHes, one per
# user; one room: MESSAGES PUBLISHes to `admins`).
#
#   bench/socketio_ab.sh build-rel/switchboard node                 # ratio to the peer
#   AB_ROUNDS=5 ROUNDS=20 bench/socketio_ab.sh /tmp/sb-old /tmp/sb-new node
#   PROBE_CMD='perf record -g -p $PIDS -o /tmp/gw.data' AB_ROUNDS=1 bench/socketio_ab.sh build-rel/switchboard
#
# PROBE_CMD runs for each many-rooms phase with $PIDS = the server's PID (see driver.js).
# STATUS_FORMAT=agent publishes statuses as Switchboard's agents do (see driver.js).
# Prints one line per run and the medians: deliveries/s of wall clock and per server CPU-s, and
# the load generator's CPU per many-rooms delivery (clients and publisher, µs).
set -euo pipefail
cd "$(dirname "$0")/.."

(( $# >= 1 )) || { echo "usage: $0 SERVER... (a switchboard binary, or node)" >&2; exit 2; }
N=${N:-10000}
WORKERS=${WORKERS:-4}
ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-20}
AB_ROUNDS=${AB_ROUNDS:-3}
SECRET=bench-secret
PEER=bench/peers/node-socketio
for s in "$@"; do
  [[ ${s##* } == node || -x ${s##* } ]] || { echo "bench: $s is neither node nor an executable" >&2; exit 2; }
done
if [[ ! -d $PEER/node_modules ]]; then
  (cd $PEER && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
want=$((N * 2 + 4096))
if (( $(ulimit -Hn) < want )); then ulimit -Hn "$want" 2>/dev/null || true; fi
ulimit -n "$(( $(ulimit -Hn) < want ? $(ulimit -Hn) : want ))"
(( $(ulimit -n) >= N + 256 )) || { echo "bench: ulimit -n $(ulimit -n) is too low for N=$N" >&2; exit 2; }
addrs=$(seq -s, -f '127.0.0.%g' 2 $((2 + N / 20000 + 1)))

# shellcheck source=bench/lib.sh
. bench/lib.sh # (the cwd is the repository root)

bench_workdir ab

bench_redis $((N + 1000))
export JWT_SECRET=$SECRET

echo "N=$N ROUNDS=$ROUNDS MESSAGES=$MESSAGES AB_ROUNDS=$AB_ROUNDS STATUS_FORMAT=${STATUS_FORMAT:-seed}; $(uptime)" >&2
for ((r = 1; r <= AB_ROUNDS; r++)); do
  for ((i = 1; i <= $#; i++)); do
    s=${!i}
    bin=${s##* } sets=${s%"$bin"} # "VAR=value ... binary": settings of that run (server and driver)
    port=$(free_port)
    # shellcheck disable=SC2086
    if [[ $bin == node ]]; then
      PORT=$port env $sets node --max-old-space-size=8192 "$PEER/server.js" >"$work/server.log" 2>&1 &
    else
      PORT=$port BIND=127.0.0.1 SIO_CONNECT_RATE_IP=0 env $sets "$bin" gateway >"$work/server.log" 2>&1 &
    fi
    spid=$!
    pids+=($spid)
    wait_http "http://127.0.0.1:$port/healthz"
    # shellcheck disable=SC2086
    out=$(env $sets node "$PEER/driver.js" "$i:$s" "ws://127.0.0.1:$port" "$spid" "$N" "$WORKERS" \
      "$MESSAGES" "$ROUNDS" "$REDIS_URL" "$SECRET" "$addrs" | tail -1)
    kill "$spid"; wait "$spid" 2>/dev/null || true
    echo "$out" >>"$work/results"
    python3 - "$out" "$r" "$(cut -d" " -f1 /proc/loadavg)" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
ok = (s["manyRoomsDelivered"] == s["connected"] * s["rounds"]
      and s["oneRoomDelivered"] == s["connected"] * s["messages"])
print(f"round {sys.argv[2]} load {sys.argv[3]:>5}  {s['name']:<40} many {s['manyRoomsPerS']:>8.0f}/s "
      f"{s['manyRoomsPerCpuS']:>8.0f}/CPU-s (load gen {s['manyRoomsLoadUs']:.1f} µs/msg)  "
      f"one {s['oneRoomPerS']:>9.0f}/s {s['oneRoomPerCpuS']:>9.0f}/CPU-s"
      + ("" if ok else f"  DELIVERIES WRONG: {s['manyRoomsDelivered']} + {s['oneRoomDelivered']}"), flush=True)
PY
  done
done
python3 - "$work/results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
names = list(dict.fromkeys(r["name"] for r in runs))
keys = ["manyRoomsPerS", "manyRoomsPerCpuS", "manyRoomsLoadUs", "oneRoomPerS", "oneRoomPerCpuS"]
med = {n: {k: statistics.median(r[k] for r in runs if r["name"] == n) for k in keys} for n in names}
print("medians (ratio to the first):")
for n in names:
    print(f"  {n:<40} " + "  ".join(f"{k} {med[n][k]:>9.0f} ({med[n][k] / med[names[0]][k]:.2f})" for k in keys))
PY
