#!/usr/bin/env bash
# POST-create-job throughput and latency: `switchboard gateway` against the seeds' Node
# backend (bench/peers/node-express: express + ioredis), same private redis-server, same run,
# same wrk load. Prints a table with requests/s, latency percentiles and the ratio.
#
#   bench/gateway_post.sh                 # defaults below
#   DURATION=20s CONNECTIONS=128 THREADS=2 bench/gateway_post.sh
#
# Both servers do the same Redis work per request (rate-limit check and record, then one MULTI
# with the record, LPUSH, user index, counter, created notification). The rate limit is set
# high enough never to refuse (RATE_LIMIT=1000000 per RATE_WINDOW=1 s) so every answer must be
# a 202; a run with any other answer is reported as failed. Redis is flushed between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SB_BIN=${SB_BIN:-build/switchboard}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
SECRET=bench-secret

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[[ -x $SB_BIN ]] || { echo "bench: $SB_BIN not built (cmake --build build)" >&2; exit 2; }
if [[ ! -d bench/peers/node-express/node_modules ]]; then
  (cd bench/peers/node-express && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_workdir post

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done

export JWT_SECRET=$SECRET REDIS_URL=redis://127.0.0.1:$rport RATE_LIMIT=1000000 RATE_WINDOW=1
TOKEN=$(JWT_SECRET=$SECRET "$SB_BIN" token --role user --public-key BENCH-PK --sub bench-user --ttl 3600)
export TOKEN

sport=$(free_port)
PORT=$sport BIND=127.0.0.1 "$SB_BIN" gateway >"$work/gateway.log" 2>&1 &
pids+=($!)
nport=$(free_port)
PORT=$nport node bench/peers/node-express/server.js >"$work/node.log" 2>&1 &
pids+=($!)

wait_ready() { # url
  for _ in $(seq 1 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $TOKEN" \
      -H 'content-type: application/json' -d '{"amount":1}' "$1" || true)
    [[ $code == 202 ]] && return 0
    sleep 0.05
  done
  echo "bench: $1 never answered 202" >&2; exit 1
}

cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"amount":1000,"priority":"high"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
              summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    summary.requests, bad))
end
EOF

run() { # name url -> "rps p50 p90 p99 mean requests bad"
  wait_ready "$2"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$work/post.lua" "$2" >/dev/null
  redis-cli -p "$rport" flushall >/dev/null
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$work/post.lua" "$2" | awk '/^RESULT/ {$1=""; print}'
}

sb=$(run switchboard "http://127.0.0.1:$sport/api/v1/agent/rebalance")
redis-cli -p "$rport" flushall >/dev/null
nd=$(run node-express "http://127.0.0.1:$nport/api/v1/agent/rebalance")

read -r s_rps s_p50 s_p90 s_p99 s_mean s_n s_bad <<<"$sb"
read -r n_rps n_p50 n_p90 n_p99 n_mean n_n n_bad <<<"$nd"
printf '\nPOST /api/v1/agent/rebalance — wrk -t%s -c%s -d%s, %s cores, redis %s\n\n' "$THREADS" \
  "$CONNECTIONS" "$DURATION" "$(nproc)" "$(redis-server --version | awk '{print $3}' | tr -d v=)"
printf '| server | requests/s | p50 ms | p90 ms | p99 ms | mean ms | requests | non-202 |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
printf '| switchboard gateway | %s | %s | %s | %s | %s | %s | %s |\n' "$s_rps" "$s_p50" "$s_p90" "$s_p99" "$s_mean" "$s_n" "$s_bad"
printf '| node-express (seeds) | %s | %s | %s | %s | %s | %s | %s |\n' "$n_rps" "$n_p50" "$n_p90" "$n_p99" "$n_mean" "$n_n" "$n_bad"
ratio=$(awk -v a="$s_rps" -v b="$n_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf '\nratio (switchboard / node-express requests/s): %s×\n' "$ratio"
if [[ $s_bad != 0 || $n_bad != 0 ]]; then echo "bench: some answers were not 202" >&2; exit 1; fi
