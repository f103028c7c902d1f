#!/usr/bin/env bash
# `make run`: the whole system on this machine. Starts a private redis-server (data and AOF
# under .run/, unix socket) unless REDIS_URL is set, then the gateway (when built) and an agent.
# Ctrl-C stops everything.
set -euo pipefail
SB=${1:-build/switchboard}
cd "$(dirname "$0")/.."
mkdir -p .run
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [[ -z ${REDIS_URL:-} ]]; then
  sock=$PWD/.run/redis.sock
  redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$PWD/.run" \
    --appendonly yes --save '' --loglevel warning --logfile "$PWD/.run/redis.log" &
  pids+=($!)
  export REDIS_URL=unix://$sock
  for _ in $(seq 100); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "redis:   private redis-server at $sock (data in .run/)"
fi
export JWT_SECRET=${JWT_SECRET:-dev-secret-change-me}
export SB_DEV=${SB_DEV:-1}

if "$SB" gateway --help >/dev/null 2>&1; then
  "$SB" gateway & pids+=($!)
  echo "gateway: http://localhost:${PORT:-3001}/  (JWT_SECRET=$JWT_SECRET)"
fi
"$SB" agent --concurrency "${CONCURRENCY:-4}" & pids+=($!)
echo "agent:   switchboard agent --concurrency ${CONCURRENCY:-4} (type rebalance)"
echo "try:     REDIS_URL=$REDIS_URL $SB enqueue --wait '{\"amount\":1000}'"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}"
