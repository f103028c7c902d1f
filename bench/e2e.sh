#!/usr/bin/env bash
# End to end: HTTP POST → agent → `done` event at the job owner's socket.io-client, for
#   (a) switchboard: `switchboard gateway` + `switchboard agent --concurrency N`,
#   (b) the seeds' Node design (bench/peers/node-design: express + ioredis + socket.io server
#       with the Redis status subscriber; ioredis BRPOP agents publishing processing/done),
#   (c) BullMQ (bench/peers/bullmq: Queue.add → Worker → QueueEvents `completed`; no HTTP),
# one after the other (never at once) on one private redis-server (free loopback port, no
# persistence), FLUSHALL before each system, all in the same invocation. For each system:
#   - jobs/s at saturation: closed loop, INFLIGHT jobs in flight over USERS users, after a
#     WARMUP, over a DURATION window;
#   - p50/p99 end-to-end latency in an open loop paced at LATENCY_LOAD (50 %) of that system's
#     own saturation rate, measured from each job's scheduled time; and, for the other systems,
#     also at the Node design's paced rate (same offered load; it runs first in each run;
#     COMMON_LOAD=0 skips that window);
#   - Redis commands per job (INFO commandstats deltas, commands inside scripts and MULTI
#     included) and Redis, gateway, agent CPU per job (/proc/PID/stat utime+stime deltas)
#     over the saturation window; the load generators' own CPU, to judge whether they limit.
# Every system gets the same agent/worker concurrency (CONCURRENCY, split over AGENT_PROCS
# processes) and the same client side (USERS sockets, CONNECTIONS keep-alive HTTP connections,
# LOADGEN_PROCS Node load generators using undici and the official socket.io-client over
# WebSocket). Every posted job is followed to `done`; any that is not fails the run (exit 1).
# Prints one table with the ratios, the floor (FLOOR=1: the commands a job's guarantees need,
# pipelined without scripts, measured on the same Redis after the systems, FLOOR_JOBS jobs) and
# the three goals of issue #23 beside their peers (the fan-out one from bench/socketio_fanout.sh
# when `make bench` ran it first), then Redis commands per job by command.
#
#   bench/e2e.sh [build/switchboard]
#   DURATION=30 WARMUP=5 RUNS=3 bench/e2e.sh         # longer runs
#   SYSTEMS=switchboard,bullmq CONCURRENCY=16 bench/e2e.sh
# Knobs (defaults): DURATION=10 WARMUP=3 RUNS=2 USERS=64 CONNECTIONS=32 INFLIGHT=256
#   CONCURRENCY=8 AGENT_PROCS=2 LOADGEN_PROCS=2 LATENCY_LOAD=0.5 COMMON_LOAD=1
#   SYSTEMS=switchboard,node-design,bullmq FLOOR=1 FLOOR_JOBS=20000 FLOOR_MODELS=0 (1: also the
#   floor of leaner data models than SPEC's, beside BullMQ) LAT_DUMP=0 (1: each window's
#   latency quantiles p50..max and those of its three parts on stderr) REDIS_TLS=0 (1: Redis over TLS, certificates made
#   by tests/e2e/lib/certs.js; only switchboard reads REDIS_TLS_CA, so use SYSTEMS=switchboard)
set -euo pipefail
cd "$(dirname "$0")/.."

export SB_BIN=${1:-${SB_BIN:-build/switchboard}}
[[ -x $SB_BIN ]] || { echo "bench: $SB_BIN not built (cmake --build build)" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "bench: redis-server is not installed" >&2; exit 2; }
for dir in bench/e2e bench/peers/node-design bench/peers/bullmq; do
  if [[ ! -d $dir/node_modules ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
exec node bench/e2e/orchestrate.js
