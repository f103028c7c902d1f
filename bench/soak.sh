#!/usr/bin/env bash
# Soak: sustained POST load through a gateway while an agent runs every job, for DURATION
# seconds; samples the resident memory of both every INTERVAL seconds and prints a table.
# Flat memory after warm-up means no leak. With an ASan build (SB_BIN=build-asan/switchboard)
# LeakSanitizer also checks both processes at their clean exit and the report is printed.
#   DURATION=120 INTERVAL=10 bench/soak.sh [path/to/switchboard]
set -euo pipefail
cd "$(dirname "$0")/.."
SB_BIN=${1:-${SB_BIN:-build/switchboard}}
DURATION=${DURATION:-120}
INTERVAL=${INTERVAL:-10}
command -v wrk >/dev/null || { echo "soak: wrk is not installed" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_workdir soak
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
export JWT_SECRET=soak-secret REDIS_URL=redis://127.0.0.1:$rport RATE_LIMIT=1000000 RATE_WINDOW=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
TOKEN=$("$SB_BIN" token --role user --public-key SOAK-PK --sub soak --ttl 86400)
export TOKEN
gport=$(free_port)
PORT=$gport BIND=127.0.0.1 LOG_LEVEL=warn "$SB_BIN" gateway >"$work/gateway.log" 2>&1 &
gw=$!; pids+=($gw)
LOG_LEVEL=warn "$SB_BIN" agent --concurrency 4 >"$work/agent.log" 2>&1 &
ag=$!; pids+=($ag)
until curl -s -o /dev/null "http://127.0.0.1:$gport/readyz"; do sleep 0.05; done

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"amount":1000}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA
wrk -t1 -c8 -d"${DURATION}s" -s "$work/post.lua" "http://127.0.0.1:$gport/api/v1/agent/rebalance" \
  >"$work/wrk.out" 2>&1 &
wrkpid=$!; pids+=($wrkpid)

day=$(date -u +%F)
printf '%8s %14s %14s %12s %12s\n' "t (s)" "gateway RSS kB" "agent RSS kB" "jobs posted" "jobs done"
start=$(date +%s)
first_gw=""; first_ag=""
while kill -0 "$wrkpid" 2>/dev/null; do
  sleep "$INTERVAL"
  t=$(( $(date +%s) - start ))
  g=$(rss_kb "$gw"); a=$(rss_kb "$ag")
  posted=$(redis-cli -p "$rport" get "metrics:agent:rebalance:counters:$day:jobs"); posted=${posted:-0}
  done_=$(redis-cli -p "$rport" get "metrics:agent:rebalance:counters:$day:done"); done_=${done_:-0}
  printf '%8s %14s %14s %12s %12s\n' "$t" "$g" "$a" "$posted" "$done_"
  # warm-up reference: the second sample
  if [[ -z $first_gw && $t -ge $((2 * INTERVAL)) ]]; then first_gw=$g; first_ag=$a; fi
  last_gw=$g; last_ag=$a
done
wait "$wrkpid" 2>/dev/null || true
# let the agent drain the queue, then stop both cleanly (LeakSanitizer runs at exit)
until [[ $(redis-cli -p "$rport" llen agent:rebalance:jobs) == 0 ]]; do sleep 0.2; done
kill -TERM "$gw" "$ag"; wait "$gw" "$ag" 2>/dev/null || true
growth() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%+.1f%%", (b - a) * 100 / a; else print "n/a" }'; }
echo "RSS growth after warm-up: gateway $(growth "${first_gw:-0}" "${last_gw:-0}"), agent $(growth "${first_ag:-0}" "${last_ag:-0}")"
grep -h "LeakSanitizer\|SUMMARY: AddressSanitizer" "$work"/gateway.log "$work"/agent.log || echo "no sanitizer reports at exit"
grep -E "Requests/sec" "$work/wrk.out" || true
