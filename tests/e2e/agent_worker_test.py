#!/usr/bin/python3
"""End-to-end tests of `switchboard agent --worker CMD` and of --exec's permanent failure,
with real handler processes (the Python @worker helper, examples/ in Python and Node) on a
private redis-server: long-lived processes, results, retry:false, an exit / a bad line / a
timeout failing one attempt and the job then succeeding, stderr in the agent's log with the
job id, shutdown; --exec exit 65 and its JSON error line."""
import json
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import sbpy  # noqa: E402
from sbpy import PY, ROOT, WAIT_S, wait_for  # noqa: E402

from switchboard import Client  # noqa: E402

E = None
PK = "PK-worker"
HANDLER = r'''
import os, sys, time
from switchboard import worker, Permanent

def once(tag):
    """True the first time tag is seen (a file per job and tag)."""
    path = os.path.join(os.environ["MARKS"], tag)
    if os.path.exists(path):
        return False
    open(path, "w").close()
    return True

@worker
def handle(job):
    p, jid = job["payload"], job["jobId"]
    mode = p.get("mode")
    if mode == "permanent":
        raise Permanent("bad input: no retry")
    if mode == "crash" and once(jid + "crash"):
        os._exit(3)
    if mode == "garbage" and once(jid + "garbage"):
        sys.__stdout__.write("this is not json\n"); sys.__stdout__.flush()
        return None   # (never answered: the agent restarted us)
    if mode == "slow" and once(jid + "slow"):
        time.sleep(60)
    if mode == "talk":
        print("hello from the handler", file=sys.stderr, flush=True)
    return {"pid": os.getpid(), "attempt": job["attempt"], "amount": p.get("amount")}

handle.run()
'''


def setUpModule():
    global E
    E = sbpy.Env()
    os.makedirs(E.path("marks"))
    with open(E.path("handler.py"), "w") as f:
        f.write(HANDLER)


def tearDownModule():
    E.close()


def text(path):
    with open(path) as f:
        return f.read()


class AgentWorker(unittest.TestCase):
    def setUp(self):
        E.redis.flushall()
        self.c = Client(E.url)
        self.log = E.path(f"{self.id().split('.')[-1]}.log")

    def tearDown(self):
        self.c.close()

    def agent(self, *flags, **env):
        env.setdefault("RETRY_BACKOFF_MS", 0)
        env.setdefault("MARKS", E.path("marks"))
        return E.start([sbpy.SB_BIN, "agent", *flags], log=self.log, **env)

    def stop(self, agent):
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(agent.wait(WAIT_S), 0)

    def enqueue(self, payload):
        return self.c.enqueue("rebalance", payload, user=PK)

    def test_long_lived_processes_and_failures(self):
        # the timeout also covers a restarted handler's start-up (Python's import time): 5 s
        # keeps a second attempt from timing out on a loaded machine
        a = self.agent("--concurrency", "2", "--worker", f"exec {PY} {E.path('handler.py')}",
                       "--job-timeout", "5")
        try:
            ids = [self.enqueue({"amount": i}) for i in range(10)]
            recs = [self.c.wait(i, timeout=WAIT_S) for i in ids]
            self.assertEqual({r["status"] for r in recs}, {"done"})
            self.assertLessEqual(len({r["result"]["pid"] for r in recs}), 2)  # reused
            perm = self.c.wait(self.enqueue({"mode": "permanent"}), timeout=WAIT_S)
            self.assertEqual((perm["status"], perm["attempts"]), ("error", 1))
            self.assertEqual(perm["error"], "bad input: no retry")
            for mode, says in (("crash", "exited with status 3"),
                               ("garbage", "not a JSON object"),
                               ("slow", "timed out")):
                r = self.c.wait(self.enqueue({"mode": mode}), timeout=WAIT_S)
                self.assertEqual((r["status"], r["attempts"]), ("done", 2), mode)
                self.assertIn(says, text(self.log))
            jid = self.enqueue({"mode": "talk"})
            self.c.wait(jid, timeout=WAIT_S)
            wait_for(lambda: f"job {jid}: hello from the handler" in text(self.log),
                     "the handler's stderr in the log")
        finally:
            self.stop(a)

    def test_example_workers_python_and_node(self):
        for cmd in (f"exec {PY} {ROOT}/examples/python/worker.py",
                    f"exec node {ROOT}/examples/node/worker.js"):
            a = self.agent("--worker", cmd, PYTHONPATH=os.path.join(ROOT, "clients/python"))
            try:
                r = self.c.wait(self.enqueue({"amount": 1000}), timeout=WAIT_S)
                self.assertEqual((r["status"], r["result"]["fee"]), ("done", 20), cmd)
                bad = self.c.wait(self.enqueue({"amount": -5}), timeout=WAIT_S)
                self.assertEqual((bad["status"], bad["attempts"], bad["error"]),
                                 ("error", 1, "Invalid amount"), cmd)
            finally:
                self.stop(a)

    def test_bad_setups(self):
        p = E.sb("agent", "--worker", "cat", "--exec", "cat", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not both", p.stderr)

    def test_exec_permanent_failure(self):
        script = E.path("exec.sh")
        with open(script, "w") as f:
            f.write('#!/bin/sh\njob=$(cat)\ncase "$job" in\n'
                    '  *\\"exit65\\"*) echo "no such account" >&2; exit 65;;\n'
                    '  *\\"line\\"*) echo \'{"error":"amount too large","retry":false}\'; exit 1;;\n'
                    '  *) echo "transient" >&2; exit 1;;\nesac\n')
        os.chmod(script, 0o755)
        a = self.agent("--exec", script, MAX_ATTEMPTS=3)
        try:
            r = self.c.wait(self.enqueue({"mode": "exit65"}), timeout=WAIT_S)
            self.assertEqual((r["status"], r["attempts"], r["error"]),
                             ("error", 1, "no such account"))
            r = self.c.wait(self.enqueue({"mode": "line"}), timeout=WAIT_S)
            self.assertEqual((r["status"], r["attempts"], r["error"]),
                             ("error", 1, "amount too large"))
            r = self.c.wait(self.enqueue({"mode": "other"}), timeout=WAIT_S)
            self.assertEqual((r["status"], r["attempts"]), ("error", 3))
        finally:
            self.stop(a)


if __name__ == "__main__":
    unittest.main(verbosity=2)
