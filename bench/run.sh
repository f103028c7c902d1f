#!/usr/bin/env bash
# `make bench`: every benchmark, each against its peer measured in the same run, one after the
# other (they share the machine's two cores, so never in parallel). Each prints its own table.
#   bench/run.sh [path/to/switchboard]
set -euo pipefail
cd "$(dirname "$0")/.."
export SB_BIN=${1:-${SB_BIN:-build/switchboard}}
# figures one benchmark leaves for another (socketio_fanout's ratio for e2e's goal lines)
SB_BENCH_SUMMARY=$(mktemp)
export SB_BENCH_SUMMARY
trap 'rm -f "$SB_BENCH_SUMMARY"' EXIT
for b in gateway_post events socketio_fanout e2e soak; do
  [[ -x bench/$b.sh ]] || continue
  echo "== bench/$b.sh"
  bench/$b.sh "$SB_BIN"
  echo
done
