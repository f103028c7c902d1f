#!/usr/bin/env bash
# Runs the official protocol test suites against sio-conformance-server.
#
#   tests/conformance/run-official.sh ENGINE_IO_SUITE SOCKET_IO_SUITE [SERVER]
#
# ENGINE_IO_SUITE / SOCKET_IO_SUITE: the test-suite/ directories of socketio/engine.io-protocol
# and socketio/socket.io-protocol, fetched outside this repository (they are not ours to copy
# in): clone the two GitHub repositories into /tmp, say, then
#   tests/conformance/run-official.sh /tmp/engine.io-protocol/test-suite \
#                                     /tmp/socket.io-protocol/test-suite
# Their npm dependencies are installed there (npm ci) when missing. SERVER defaults to
# build/tests/sio-conformance-server (make build), else build-asan/tests/.
# The suites talk to localhost:3000, so the server listens there: the port must be free.
# Prints each suite's mocha summary and a last line "N passed, M failed"; exits 0 when
# every test passed, 1 otherwise, 2 on a usage error. Not part of `make test` (it needs the
# fetched suites); tests/e2e/conformance_server.test.js covers the server there.
set -euo pipefail

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 2 ] && [ $# -le 3 ] || usage
here=$(cd "$(dirname "$0")/../.." && pwd)
eio_suite=$(cd "$1" && pwd) || usage
sio_suite=$(cd "$2" && pwd) || usage
server=${3:-}
if [ -z "$server" ]; then
  for b in build build-asan; do
    if [ -x "$here/$b/tests/sio-conformance-server" ]; then
      server=$here/$b/tests/sio-conformance-server
      break
    fi
  done
fi
[ -n "$server" ] && [ -x "$server" ] || { echo "no sio-conformance-server: make build first" >&2; exit 2; }
for d in "$eio_suite" "$sio_suite"; do
  [ -f "$d/test-suite.js" ] || { echo "$d: no test-suite.js (give the test-suite/ directory)" >&2; exit 2; }
  [ -d "$d/node_modules" ] || (cd "$d" && npm ci --no-audit --no-fund >/dev/null)
done

log=$(mktemp -d)
"$server" --port 3000 >"$log/server.out" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$log"
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q '^listening on' "$log/server.out" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log/server.out" >&2; exit 1; }
  sleep 0.1
done

passed=0
failed=0
for d in "$eio_suite" "$sio_suite"; do
  echo "== $d ($(git -C "$d" rev-parse HEAD 2>/dev/null || echo 'commit unknown'))"
  (cd "$d" && npx mocha --reporter spec test-suite.js) >"$log/suite.out" 2>&1 || true
  grep -E '✔|[0-9]+\) |passing|failing|pending' "$log/suite.out" || cat "$log/suite.out"
  p=$(sed -n 's/^ *\([0-9]\+\) passing.*/\1/p' "$log/suite.out")
  f=$(sed -n 's/^ *\([0-9]\+\) failing.*/\1/p' "$log/suite.out")
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  [ -n "$p" ] || failed=$((failed + 1)) # mocha did not get to its summary
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
