#!/usr/bin/env bash
# Event bus throughput: Switchboard (the C CLI on libswitchboard) against the same flow in
# Python redis-py (seed 003's code), on one private redis-server, in the same run.
#
#   publish, 1 RTT/event   one XADD per round trip (the seed's publish_event; `--count 1`)
#   publish, batches of 100  XADDs pipelined 100 at a time
#   consume (1 consumer)   XREADGROUP COUNT 100, parse data, XACK each entry after handling
#
# usage: bench/events.sh [path/to/switchboard] [N events, default 50000]
set -euo pipefail
SB=${1:-build/switchboard}
N=${2:-50000}
PY=/usr/bin/python3
dir=$(mktemp -d)
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  --loglevel warning >/dev/null &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$dir"' EXIT
export REDIS_URL="redis://127.0.0.1:$port" LOG_LEVEL=warn
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done

now() { date +%s.%N; }
rate() { $PY -c "print(round($N / ($2 - $1)))"; }

# the payload the seed's examples carry
seq "$N" | sed 's/.*/{"task_id":"task-&","priority":"high","payload":{}}/' >"$dir/events.ndjson"

t0=$(now); "$SB" events publish bench.one - --count 1 <"$dir/events.ndjson" 2>/dev/null; t1=$(now)
sb_pub1=$(rate "$t0" "$t1")
t0=$(now); "$SB" events publish bench.sb - --count 100 <"$dir/events.ndjson" 2>/dev/null; t1=$(now)
sb_pub=$(rate "$t0" "$t1")
t0=$(now)
"$SB" events consume bench.sb --count 100 --block-ms 100 --max-events "$N" >/dev/null 2>&1
t1=$(now)
sb_con=$(rate "$t0" "$t1")
[[ $(redis-cli -p "$port" XPENDING agent:stream:bench.sb agent-group | head -1) == 0 ]] ||
  { echo "switchboard left entries pending" >&2; exit 1; }

read -r py_pub1 py_pub py_con < <($PY - "$port" "$N" <<'PYEOF'
import json, sys, time, uuid
from datetime import datetime, timezone
import redis
port, n = int(sys.argv[1]), int(sys.argv[2])
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

def event(event_type, data):  # seed 003 publish_event's envelope
    return {"event_id": str(uuid.uuid4()), "event_type": event_type,
            "timestamp": datetime.now(timezone.utc).isoformat(), "data": json.dumps(data)}

datas = [{"task_id": f"task-{i}", "priority": "high", "payload": {}} for i in range(1, n + 1)]
t0 = time.perf_counter()
for d in datas:
    r.xadd("agent:stream:pybench.one", event("pybench.one", d))
pub1 = n / (time.perf_counter() - t0)

t0 = time.perf_counter()
p = r.pipeline(transaction=False)
for i, d in enumerate(datas, 1):
    p.xadd("agent:stream:pybench", event("pybench", d))
    if i % 100 == 0:
        p.execute()
p.execute()
pub = n / (time.perf_counter() - t0)

stream = "agent:stream:pybench"
r.xgroup_create(stream, "agent-group", id="0", mkstream=True)
t0 = time.perf_counter()
done = 0
while done < n:  # seed 003's consumer-group loop
    for s, msgs in r.xreadgroup("agent-group", "agent-1", {stream: ">"}, count=100, block=100) or []:
        for msg_id, msg in msgs:
            json.loads(msg["data"])
            r.xack(s, "agent-group", msg_id)
            done += 1
con = n / (time.perf_counter() - t0)
print(round(pub1), round(pub), round(con))
PYEOF
)

ratio() { $PY -c "print(f'{$1 / $2:.2f}x')"; }
printf '\nevent bus throughput, %d events, redis-server %s on loopback TCP, %s CPUs\n\n' \
  "$N" "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" "$(nproc)"
printf '| %-34s | %16s | %16s | %8s |\n' "flow (events/s)" "switchboard" "python redis-py" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------" "------------------" \
  "------------------" "----------"
printf '| %-34s | %16s | %16s | %8s |\n' "publish, 1 round trip per event" "$sb_pub1" "$py_pub1" \
  "$(ratio "$sb_pub1" "$py_pub1")"
printf '| %-34s | %16s | %16s | %8s |\n' "publish, pipelined 100 per batch" "$sb_pub" "$py_pub" \
  "$(ratio "$sb_pub" "$py_pub")"
printf '| %-34s | %16s | %16s | %8s |\n' "consume per consumer, ack each" "$sb_con" "$py_con" \
  "$(ratio "$sb_con" "$py_con")"
