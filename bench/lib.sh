# Shell helpers the benches share (sourced, not run): a work directory whose processes
# and files are cleaned up on exit, a free loopback port, waiting for an HTTP endpoint, and a
# private redis-server.

# Makes `work` (a temp dir named after $1) and `pids` (processes to stop); on exit, every pid
# in pids is killed and work removed.
bench_workdir() { # name
  work=$(mktemp -d "/tmp/sb-bench-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_http() { # url
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "bench: $1 never answered" >&2; exit 1
}

# Starts redis-server on a free port for up to $1 clients, in $work, its pid in pids (after
# bench_workdir); sets
# rport and exports REDIS_URL. Returns once it answers PING.
bench_redis() { # maxclients
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --maxclients "$1" --loglevel warning >"$work/redis.log" 2>&1 &
  pids+=($!)
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
  export REDIS_URL=redis://127.0.0.1:$rport
}
