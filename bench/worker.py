#!/usr/bin/python3
"""Benchmark (not a test): jobs/s of a trivial Python handler run by `switchboard agent
--worker` (long-lived processes, JSON lines) against the same handler with `--exec` (a
process per job) and against seed 000's ioredis agent (bench/peers/node-design/agent.js, the
BRPOP loop with its work done in Node), measured in the same run on a private redis-server.

Each mode gets N jobs queued before it starts (by the Python client: record + id, as every
producer), then the clock runs from the agent's start until the last `done` status message
on agent:rebalance:status. Concurrency C for all three (processes / loops).

    bench/worker.py [--bin build/switchboard] [--jobs 2000] [--exec-jobs 300] [-c 2]
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "clients/python"))
import redis  # noqa: E402
from switchboard import Client  # noqa: E402

PY = "/usr/bin/python3"
WORKER = ("from switchboard import worker\n"
          "@worker\n"
          "def h(job):\n"
          "    return {'ok': True, 'amount': job['payload']['amount']}\n"
          "h.run()\n")
EXEC = ("import json, sys\n"
        "job = json.load(sys.stdin)\n"
        "print(json.dumps({'ok': True, 'amount': job['payload']['amount']}))\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_mode(url, argv, env, n):
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushall()
    c = Client(url)
    for _ in range(n):
        c.enqueue("rebalance", {"amount": 100}, user="BENCH")
    done = threading.Event()
    count = [0]
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("agent:rebalance:status")

    def listen():
        for m in ps.listen():
            if '"status":"done"' in m["data"]:
                count[0] += 1
                if count[0] >= n:
                    done.set()
                    return
    t = threading.Thread(target=listen, daemon=True)
    t.start()
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = done.wait(600)
    elapsed = time.monotonic() - t0
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
    ps.close()
    c.close()
    return n / elapsed if ok else 0.0, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SB_BIN", os.path.join(ROOT, "build/switchboard")))
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--exec-jobs", type=int, default=300)
    ap.add_argument("-c", "--concurrency", type=int, default=2)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sb-bench-worker-")
    port = free_port()
    srv = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                            "", "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        for name, body in (("worker.py", WORKER), ("exec.py", EXEC)):
            with open(os.path.join(d, name), "w") as f:
                f.write(body)
        env = dict(os.environ, REDIS_URL=url, LOG_LEVEL="warn",
                   PYTHONPATH=os.path.join(ROOT, "clients/python"), LOOPS=str(a.concurrency),
                   NODE_PATH=os.path.join(ROOT, "bench/peers/node-design/node_modules") + ":" +
                   os.path.join(ROOT, "tests/e2e/node_modules"))
        conc = ["--concurrency", str(a.concurrency)]
        modes = [
            ("switchboard agent --worker (Python)", a.jobs,
             [a.bin, "agent", *conc, "--worker", f"exec {PY} {d}/worker.py"]),
            ("switchboard agent --exec (Python)", a.exec_jobs,
             [a.bin, "agent", *conc, "--exec", f"exec {PY} {d}/exec.py"]),
            ("seed 000 ioredis agent (Node)", a.jobs,
             ["node", os.path.join(ROOT, "bench/peers/node-design/agent.js")]),
        ]
        print(f"| handler | jobs | seconds | jobs/s |  (concurrency {a.concurrency}, "
              f"{os.cpu_count()} cores)")
        print("|---|---:|---:|---:|")
        for name, n, argv in modes:
            rate, secs = run_mode(url, argv, env, n)
            print(f"| {name} | {n} | {secs:.2f} | {rate:.0f} |", flush=True)
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
