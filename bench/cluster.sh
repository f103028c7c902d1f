#!/usr/bin/env bash
# Redis Cluster: jobs/s and Redis CPU per job per master, 1 master vs 3 masters, same run
# (bench/cluster.js says how). About a minute.
#   bench/cluster.sh [build/switchboard]
#   JOBS=4000 TYPES=3 CONCURRENCY=8 QUEUE_SHARDS=6 bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SB_BIN=${1:-${SB_BIN:-build/switchboard}}
[[ -x $SB_BIN ]] || { echo "bench: $SB_BIN not built (cmake --build build)" >&2; exit 2; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "bench: redis-server and redis-cli are needed" >&2; exit 2; }
export NODE_PATH=$PWD/tests/e2e/node_modules
exec node bench/cluster.js
