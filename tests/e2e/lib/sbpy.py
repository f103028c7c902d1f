"""Helpers of the Python end-to-end tests of clients/python and examples/: a private
redis-server on a free loopback port, the real switchboard binary, and waits that poll an
observable state with a deadline (they never decide a pass by sleeping)."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../.."))
SB_BIN = os.environ.get("SB_BIN", os.path.join(ROOT, "build/switchboard"))
REDIS_SERVER = os.environ.get("SB_REDIS_SERVER", "redis-server")
PY = "/usr/bin/python3"
WAIT_S = 20
sys.path.insert(0, os.path.join(ROOT, "clients/python"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, what, timeout=WAIT_S, progress=None):
    """Polls cond until it is true. Fails after timeout seconds without it, or, with progress
    (a function reading the state the wait is about), after timeout seconds in which that
    state did not change: a hang fails, a machine that is merely slow does not."""
    deadline = time.monotonic() + timeout
    seen = progress() if progress else None
    while True:
        v = cond()
        if v:
            return v
        now = progress() if progress else None
        if now != seen:
            seen, deadline = now, time.monotonic() + timeout
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f" (stuck at {seen})" if progress else ""))
        time.sleep(0.02)


class Env:
    """A redis-server and the processes started against it; close() ends them all."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sb-py-e2e-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.server = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind",
                                        "127.0.0.1", "--save", "", "--appendonly", "no",
                                        "--dir", self.dir], stdout=subprocess.DEVNULL)
        self.redis = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        self.children = []

        def up():
            try:
                return self.redis.ping()
            except redis.ConnectionError:
                return False
        wait_for(up, "redis-server to answer")

    def env(self, **extra):
        e = dict(os.environ)
        e.update(REDIS_URL=self.url, LOG_LEVEL="info",
                 PYTHONPATH=os.path.join(ROOT, "clients/python"))
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def sb(self, *args, check=True, timeout=WAIT_S, **extra):
        p = subprocess.run([SB_BIN, *args], env=self.env(**extra), capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"switchboard {args} exited {p.returncode}: {p.stderr}")
        return p

    def start(self, argv, log=None, **extra):
        out = open(log, "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(argv, env=self.env(**extra), stdout=out, stderr=out)
        if log:
            out.close()
        self.children.append(p)
        return p

    def path(self, name):
        return os.path.join(self.dir, name)

    def close(self):
        for c in self.children:
            if c.poll() is None:
                c.kill()
                c.wait()
        self.server.kill()
        self.server.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
