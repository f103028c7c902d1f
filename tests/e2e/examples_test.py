#!/usr/bin/python3
"""Runs every program of examples/ against a private redis-server and the real binaries:
the producers (Python, Node) against `switchboard agent`; the seed 003 consumer and
requester against each other; the --worker handlers (Python, Node) through the protocol."""
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import sbpy  # noqa: E402
from sbpy import PY, ROOT, WAIT_S, wait_for  # noqa: E402

EX = os.path.join(ROOT, "examples")
NODE_PATH = os.path.join(ROOT, "tests/e2e/node_modules")
E = None


def setUpModule():
    global E
    E = sbpy.Env()


def tearDownModule():
    E.close()


def text(path):
    with open(path) as f:
        return f.read()


def run(argv, **kw):
    return subprocess.run(argv, env=E.env(NODE_PATH=NODE_PATH), capture_output=True, text=True,
                          timeout=WAIT_S * 2, **kw)


class Examples(unittest.TestCase):
    def test_producers_against_the_agent(self):
        agent = E.start([sbpy.SB_BIN, "agent"], log=E.path("agent.log"))
        try:
            for argv in ([PY, os.path.join(EX, "python/producer.py"), "1000"],
                         ["node", os.path.join(EX, "node/producer.js"), "1000"]):
                p = run(argv)
                self.assertEqual(p.returncode, 0, p.stderr)
                rec = json.loads(p.stdout)
                self.assertEqual(rec["status"], "done")
                self.assertEqual(rec["result"]["fee"], 20)
        finally:
            agent.kill()
            agent.wait()

    def test_seed_003_consumer_and_requester(self):
        log = E.path("consumer.log")
        consumer = E.start([PY, "-u", os.path.join(EX, "python/consumer.py")], log=log)
        wait_for(lambda: "consumer started" in text(log), "the consumer")
        p = run([PY, os.path.join(EX, "python/requester.py"), "456"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout),
                         {"result": {"doc_id": "456", "chunks": 15}, "status": "success"})
        wait_for(lambda: "Processing task: 123" in text(log), "task.created handled")
        consumer.send_signal(signal.SIGTERM)
        self.assertEqual(consumer.wait(WAIT_S), 0)

    def test_worker_handlers_speak_the_protocol(self):
        jobs = "".join(json.dumps({"jobId": f"1-{i}", "type": "rebalance", "payload": p,
                                   "user": None, "attempt": 1}) + "\n"
                       for i, p in enumerate([{"amount": 1000}, {"amount": -1}]))
        for argv in ([PY, os.path.join(EX, "python/worker.py")],
                     ["node", os.path.join(EX, "node/worker.js")]):
            p = run(argv, input=jobs)
            self.assertEqual(p.returncode, 0, p.stderr)
            ok, bad = [json.loads(line) for line in p.stdout.splitlines()]
            self.assertEqual((ok["jobId"], ok["result"]["fee"]), ("1-0", 20))
            self.assertEqual(bad, {"jobId": "1-1", "error": "Invalid amount", "retry": False})


if __name__ == "__main__":
    unittest.main(verbosity=2)
