#!/usr/bin/env bash
# Socket.IO: idle connections and memory per connection, and fan-out messages/s, for
# `switchboard gateway` against the seeds' Node real-time backend (bench/peers/node-socketio:
# socket.io 4 + @socket.io/redis-adapter + ioredis), same private redis-server, same run.
#
#   bench/socketio_fanout.sh                  # N=10000 connections
#   bench/socketio_fanout.sh path/to/switchboard   # another binary (as `make bench` passes it)
#   bench/socketio_fanout.sh --n 50000        # the 50k target (N=50000 works too)
#   N=5000 WORKERS=4 ROUNDS=3 MESSAGES=20 bench/socketio_fanout.sh
#   bench/socketio_fanout.sh --n 50000 --gateways 3   # N over 3 gateways on one Redis
#
# Load: WORKERS node processes (peers/node-socketio/client.js) hold N raw WebSocket clients
# speaking the Engine.IO/Socket.IO text protocol (no socket.io-client overhead), spread over
# several loopback source addresses. For each server the driver (driver.js) measures
#   - connect time and the server's RSS growth per connection (idle, each socket in its own
#     user room and in `admins`),
#   - many rooms: ROUNDS × N status PUBLISHes on agent:rebalance:status, one per user, each
#     delivered to that user's socket,
#   - one room: MESSAGES PUBLISHes to room `admins` on agent:rebalance:events, each delivered
#     to all N sockets,
# counting deliveries at the clients. Then prints a table with the ratios.
#
# Every bench client is an admin (room `admins` is the one room) that does not ask for the
# operator console's feed (handshake auth {console: true}), so the gateway runs with its
# defaults; before the feed became opt-in it sent each of the N sockets three events a second
# (bench/README.md, "Issue #23: many-rooms fan-out"). The clients count only the bench's
# `rebalance:*` events either way.
#
# --gateways K (K > 1) runs K `switchboard gateway` processes on the one Redis, the clients
# spread evenly over them, and measures them together (RSS and CPU summed): a way to hold
# more connections than one process's descriptor limit allows. The Node peer is not run in
# that mode (the seed's subscriber emits through the redis-adapter from every instance, so
# K instances would deliver every status K times); its figures come from a K = 1 run.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
GATEWAYS=${GATEWAYS:-1}
while [[ $# -gt 0 ]]; do
  case $1 in
    --n) N=$2; shift 2 ;;
    --gateways) GATEWAYS=$2; shift 2 ;;
    -*) echo "usage: $0 [path/to/switchboard] [--n N] [--gateways K]" >&2; exit 2 ;;
    *) SB_BIN=$1; shift ;;
  esac
done
SB_BIN=${SB_BIN:-build/switchboard}
WORKERS=${WORKERS:-$(( GATEWAYS > 1 ? 2 * GATEWAYS : 4 ))}
(( GATEWAYS >= 1 && WORKERS % GATEWAYS == 0 )) ||
  { echo "bench: WORKERS ($WORKERS) must be a multiple of --gateways ($GATEWAYS)" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-20}
SECRET=bench-secret
PEER=bench/peers/node-socketio

[[ -x $SB_BIN ]] || { echo "bench: $SB_BIN not built (cmake --build build)" >&2; exit 2; }
if [[ ! -d $PEER/node_modules ]]; then
  (cd $PEER && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# every connection is a descriptor in a server process and one in a client process; the hard
# limit can only be raised with CAP_SYS_RESOURCE (one process holding 50k needs it: ulimit
# -Hn 60000 or more; without it, --gateways spreads them over several processes)
per_proc=$(( (N + GATEWAYS - 1) / GATEWAYS ))
per_worker=$(( (N + WORKERS - 1) / WORKERS ))
(( per_worker > per_proc )) && per_proc=$per_worker
want=$((per_proc * 2 + 4096))
if (( $(ulimit -Hn) < want )); then ulimit -Hn "$want" 2>/dev/null || true; fi
ulimit -n "$(( $(ulimit -Hn) < want ? $(ulimit -Hn) : want ))"
(( $(ulimit -n) >= per_proc + 256 )) || {
  echo "bench: ulimit -n $(ulimit -n) is too low for $per_proc connections per process (N=$N): use --gateways" >&2
  exit 2
}
# loopback source addresses: ~28k ephemeral ports each
addrs=$(seq -s, -f '127.0.0.%g' 2 $((2 + N / 20000 + 1)))

# shellcheck source=bench/lib.sh
. bench/lib.sh # (the cwd is the repository root)

bench_workdir sio

bench_redis $((N + 1000))
export JWT_SECRET=$SECRET

run() { # name port pid
  node "$PEER/driver.js" "$1" "ws://127.0.0.1:$2" "$3" "$N" "$WORKERS" "$MESSAGES" "$ROUNDS" \
    "$REDIS_URL" "$SECRET" "$addrs" | tail -1
}

surls=() spids=()
for ((g = 0; g < GATEWAYS; g++)); do
  sport=$(free_port)
  PORT=$sport BIND=127.0.0.1 SIO_CONNECT_RATE_IP=0 "$SB_BIN" gateway >"$work/gateway-$g.log" 2>&1 &
  spids+=($!)
  pids+=($!)
  wait_http "http://127.0.0.1:$sport/healthz"
  surls+=("ws://127.0.0.1:$sport")
done
echo "switchboard gateway x$GATEWAYS: $N connections..." >&2
sb=$(node "$PEER/driver.js" switchboard "$(IFS=,; echo "${surls[*]}")" "$(IFS=,; echo "${spids[*]}")" \
  "$N" "$WORKERS" "$MESSAGES" "$ROUNDS" "$REDIS_URL" "$SECRET" "$addrs" | tail -1)
kill "${spids[@]}"; wait "${spids[@]}" 2>/dev/null || true

if (( GATEWAYS > 1 )); then
  python3 - "$sb" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
print(f"N = {s['n']} over {s['processes']} switchboard gateways on one Redis (RSS and CPU summed)")
for label, k, fmt in [("connections held", "connected", "{:.0f}"), ("connect errors", "errors", "{:.0f}"),
                      ("time to connect all (s)", "connectS", "{:.1f}"), ("RSS, idle (MB)", "rssBaseMb", "{:.1f}"),
                      ("RSS with N (MB)", "rssMb", "{:.1f}"), ("RSS per connection (KB)", "kbPerConn", "{:.2f}"),
                      ("fan-out, many rooms (msg/s)", "manyRoomsPerS", "{:.0f}"),
                      ("fan-out, one room (msg/s)", "oneRoomPerS", "{:.0f}"),
                      ("many rooms, per server CPU-s", "manyRoomsPerCpuS", "{:.0f}"),
                      ("one room, per server CPU-s", "oneRoomPerCpuS", "{:.0f}")]:
    print(f"| {label:<30} | {fmt.format(s[k]):>12} |")
if (s["manyRoomsDelivered"] != s["connected"] * s["rounds"]
        or s["oneRoomDelivered"] != s["connected"] * s["messages"]):
    print(f"WARNING: deliveries lost or repeated: {s}")
else:
    print(f"every delivery arrived once: {s['manyRoomsDelivered']} + {s['oneRoomDelivered']}")
PY
  exit 0
fi

nport=$(free_port)
PORT=$nport node --max-old-space-size=8192 "$PEER/server.js" >"$work/node.log" 2>&1 &
npid=$!
pids+=($npid)
wait_http "http://127.0.0.1:$nport/"
echo "node socket.io: $N connections..." >&2
nd=$(run node-socketio "$nport" "$npid")

python3 - "$sb" "$nd" <<'PY'
import json, sys
s, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rows = [
    ("connections held", "connected", "{:.0f}", None),
    ("connect errors", "errors", "{:.0f}", None),
    ("time to connect all (s)", "connectS", "{:.1f}", "low"),
    ("server RSS, idle (MB)", "rssBaseMb", "{:.1f}", None),
    ("server RSS with N (MB)", "rssMb", "{:.1f}", "low"),
    ("RSS per connection (KB)", "kbPerConn", "{:.2f}", "low"),
    ("fan-out, many rooms (msg/s)", "manyRoomsPerS", "{:.0f}", "high"),
    ("fan-out, one room (msg/s)", "oneRoomPerS", "{:.0f}", "high"),
    ("many rooms, per server CPU-s", "manyRoomsPerCpuS", "{:.0f}", "high"),
    ("one room, per server CPU-s", "oneRoomPerCpuS", "{:.0f}", "high"),
]
print(f"N = {s['n']}")
print(f"| {'metric':<30} | {'switchboard':>12} | {'node socket.io':>14} | {'ratio':>7} |")
print(f"|{'-'*32}|{'-'*14}|{'-'*16}|{'-'*9}|")
for label, k, fmt, better in rows:
    a, b = s[k], n[k]
    ratio = ""
    if better == "high" and b: ratio = f"{a / b:.1f}x"
    if better == "low" and a: ratio = f"{b / a:.1f}x"
    print(f"| {label:<30} | {fmt.format(a):>12} | {fmt.format(b):>14} | {ratio:>7} |")
print("ratio: how many times better switchboard is (higher rate, lower memory / time)")
import os
if os.environ.get("SB_BENCH_SUMMARY") and n["manyRoomsPerS"] and n["manyRoomsPerCpuS"]:
    with open(os.environ["SB_BENCH_SUMMARY"], "a") as out:  # bench/run.sh: e2e's goal lines
        out.write(json.dumps({"bench": "socketio_fanout", "n": s["n"],
                              "manyRoomsRatio": s["manyRoomsPerS"] / n["manyRoomsPerS"],
                              "manyRoomsPerCpuRatio": s["manyRoomsPerCpuS"] / n["manyRoomsPerCpuS"]}) + "\n")
for r in (s, n):
    if (r["manyRoomsDelivered"] != r["connected"] * r["rounds"]
            or r["oneRoomDelivered"] != r["connected"] * r["messages"]):
        print(f"WARNING: {r['name']} lost or repeated deliveries: {r}")
PY
