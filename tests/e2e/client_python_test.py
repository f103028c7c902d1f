#!/usr/bin/python3
"""End-to-end tests of clients/python (package `switchboard`) against a real redis-server and
the real switchboard binary:

- Client.enqueue writes what `switchboard job` reads and `switchboard agent` runs; wait()
  follows it to its end (and still ends when no status message ever comes: the polling
  fallback); a job queued by `switchboard enqueue` is read by Client.job
- the Lua scripts: after only the C binary ran them, Redis knows the SHA1 of the bytes the
  client sends (so the bytes are identical), for submit.lua and exec_stats.lua
- metrics_summary() equals `switchboard metrics --json`; check_rate_limit's sliding window
- event_bus interop both ways with `switchboard events`: publish → consume, publish → our
  consumer, request → `consume --respond`, `events request` → our responder; our consumer
  claims entries a dead consumer left pending, dead-letters malformed and poison entries
  (in the C consumer's format) and suppresses duplicates by event_id.
Run with /usr/bin/python3 (Debian python3-redis)."""
import asyncio
import hashlib
import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import sbpy  # noqa: E402
from sbpy import PY, wait_for  # noqa: E402

import switchboard  # noqa: E402
from switchboard import Client, EventBus, DeadLetter  # noqa: E402
from switchboard import _common  # noqa: E402

E = None
PK = "GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq"


def setUpModule():
    global E
    E = sbpy.Env()


def tearDownModule():
    E.close()


def run(coro):
    return asyncio.run(coro)


class ClientTest(unittest.TestCase):
    def setUp(self):
        E.redis.flushall()
        E.redis.script_flush()
        self.c = Client(E.url)

    def tearDown(self):
        self.c.close()

    def test_enqueue_record_and_cli_agent(self):
        ps = E.redis.pubsub(ignore_subscribe_messages=True)
        ps.subscribe("agent:rebalance:events")
        jid = self.c.enqueue("rebalance", {"amount": 1000, "priority": "high"},
                             user={"publicKey": PK, "id": "u-42"})
        rec = json.loads(E.sb("job", "--json", jid).stdout)
        self.assertEqual(rec["jobId"], jid)
        self.assertEqual(rec["status"], "queued")
        self.assertEqual(rec["user"], {"publicKey": PK, "id": "u-42"})
        self.assertEqual(rec["payload"], {"amount": 1000, "priority": "high"})
        self.assertEqual(E.redis.lrange("agent:rebalance:jobs", 0, -1), [jid])
        self.assertIsNotNone(E.redis.zscore(f"agent:rebalance:user:{PK}", jid))
        audit = E.redis.xrange("agent:stream:job.created")
        self.assertEqual(json.loads(audit[0][1]["data"]),
                         {"jobId": jid, "type": "rebalance", "userId": PK})
        msg = wait_for(lambda: ps.get_message(timeout=0.1), "the created notification")
        self.assertEqual(json.loads(msg["data"]), {"event": "rebalance:created",
                                                   "room": f"user:{PK}",
                                                   "data": {"jobId": jid}})
        agent = E.start([sbpy.SB_BIN, "agent"], log=E.path("agent.log"))
        try:
            done = self.c.wait(jid, timeout=30)
        finally:
            agent.kill()
            agent.wait()
        self.assertEqual(done["status"], "done")
        self.assertEqual(done["result"]["originalAmount"], 1000)

    def test_job_queued_by_cli(self):
        out = E.sb("enqueue", "--user", PK, '{"amount":5}').stdout.strip()
        rec = self.c.job(out)
        self.assertEqual(rec["payload"], {"amount": 5})
        self.assertIsNone(self.c.job("1-ffffffff"))
        with self.assertRaises(ValueError):
            self.c.job("../etc")

    def test_wait_polling_fallback(self):
        """No status message at all (the record is changed by hand): wait() still ends."""
        jid = self.c.enqueue("rebalance", {"amount": 1}, user=PK)
        rec = self.c.job(jid)

        def finish():
            rec["status"] = "done"
            E.redis.set(f"agent:rebalance:job:{jid}", json.dumps(rec))
        t = threading.Timer(0.3, finish)
        t.start()
        self.assertEqual(self.c.wait(jid, timeout=20)["status"], "done")
        t.join()
        with self.assertRaises(TimeoutError):
            self.c.wait(self.c.enqueue("rebalance", {"amount": 1}, user=PK), timeout=0.5)

    def test_bad_input_changes_nothing(self):
        for args in [("Bad Type", {}, PK), ("rebalance", {}, "has space"),
                     ("rebalance", float("nan"), PK)]:
            with self.assertRaises(ValueError):
                self.c.enqueue(*args)
        self.assertEqual(E.redis.dbsize(), 0)

    def test_scripts_byte_identical_to_c(self):
        E.sb("enqueue", "--user", PK, '{"amount":5}')
        E.sb("metrics", "--json")
        for name in ("submit", "exec_stats"):
            sha = hashlib.sha1(_common.lua(name)).hexdigest()
            self.assertEqual(E.redis.script_exists(sha), [True], name)
        self.assertEqual(self.c._submit.sha, hashlib.sha1(_common.lua("submit")).hexdigest())

    def test_pip_install_offline(self):
        """`pip install` of the directory works without a network and carries the scripts."""
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as target, tempfile.TemporaryDirectory() as build:
            src = os.path.join(build, "python")
            import shutil
            shutil.copytree(os.path.join(sbpy.ROOT, "clients/python"), src, symlinks=False,
                            ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
            p = subprocess.run([PY, "-m", "pip", "install", "-q", "--no-build-isolation",
                                "--no-deps", "--no-index", "--target", target, src],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            for name in ("submit", "exec_stats", "events_keep"):
                with open(os.path.join(target, "switchboard/lua", name + ".lua"), "rb") as f:
                    self.assertEqual(f.read(), _common.lua(name))

    def test_metrics_summary_matches_cli(self):
        for _ in range(3):
            self.c.enqueue("rebalance", {"amount": 1}, user=PK)
        E.redis.zadd("metrics:agent:rebalance:execution_times", {"a": 10, "b": 30})
        self.c.check_rate_limit("u1", 5, 60)
        mine = self.c.metrics_summary(7)
        cli = json.loads(E.sb("metrics", "--json").stdout)
        for k in ("totalJobs", "failedJobs", "doneJobs", "avgExecutionTime",
                  "p95ExecutionTime", "rateLimit"):
            self.assertEqual(mine[k], cli[k], k)
        self.assertEqual(mine["totalJobs"], 3)
        self.assertEqual(mine["avgExecutionTime"], 20)

    def test_check_rate_limit_window(self):
        self.assertEqual([self.c.check_rate_limit("u7", 2, 60) for _ in range(3)],
                         [True, True, False])
        self.assertTrue(self.c.check_rate_limit("u8", 2, 60))
        with self.assertRaises(switchboard.RateLimited):
            for _ in range(3):
                self.c.enqueue("rebalance", {"amount": 1}, user=PK, rate_user="u9", limit=2)


class EventBusTest(unittest.TestCase):
    def setUp(self):
        E.redis.flushall()

    def bus(self, **kw):
        return EventBus(E.url, **kw)

    def test_publish_to_cli_consumer(self):
        eid = run(self._publish_one())
        out = E.path("consumed.jsonl")
        handler = E.path("h.sh")
        with open(handler, "w") as f:
            f.write(f"#!/bin/sh\ncat >> {out}; echo >> {out}\n")
        os.chmod(handler, 0o755)
        E.sb("events", "consume", "task.created", "--exec", handler, "--max-events", "1")
        with open(out) as f:
            got = json.loads(f.read().strip())
        self.assertEqual(got["event_id"], eid)
        self.assertEqual(got["data"], {"task_id": "123", "priority": "high"})

    async def _publish_one(self):
        b = self.bus()
        try:
            return await b.publish("task.created", {"task_id": "123", "priority": "high"})
        finally:
            await b.stop_consumer()

    def test_cli_publish_to_our_consumer(self):
        for i in range(5):
            E.sb("events", "publish", "task.created", json.dumps({"task_id": str(i)}))
        got = run(self._consume("task.created", 5))
        self.assertEqual(sorted(d["task_id"] for d in got), ["0", "1", "2", "3", "4"])
        self.assertEqual(E.redis.xpending("agent:stream:task.created", "agent-group")["pending"],
                         0)

    async def _consume(self, type_, n, bus=None, handler=None):
        b = bus or self.bus(block_ms=100)
        got = []
        done = asyncio.Event()

        @b.subscribe(type_)
        async def h(data):
            got.append(data)
            r = await handler(data) if handler else None
            if len(got) >= n:
                done.set()
            return r
        task = asyncio.create_task(b.start_consumer("agent-group", "py-1"))
        await asyncio.wait_for(done.wait(), 20)
        await b.stop_consumer()
        await task
        return got

    def test_request_to_cli_responder(self):
        responder = E.path("r.sh")
        with open(responder, "w") as f:
            f.write("#!/bin/sh\necho '{\"result\":\"ok\",\"status\":\"success\"}'\n")
        os.chmod(responder, 0o755)
        p = E.start([sbpy.SB_BIN, "events", "consume", "document.process", "--exec",
                     responder, "--respond", "--max-events", "1"])

        async def ask():
            b = self.bus()
            try:
                return await b.request("document.process", {"doc_id": "456"}, timeout=20)
            finally:
                await b.stop_consumer()
        self.assertEqual(run(ask()), {"result": "ok", "status": "success"})
        p.wait(20)
        self.assertEqual(E.redis.keys("agent:stream:response:*"), [])

    def test_cli_request_to_our_responder(self):
        async def serve():
            b = self.bus(block_ms=100)

            @b.subscribe("document.process")
            async def h(data):
                return {"doc": data["doc_id"], "event_id": data.get("event_id")}
            task = asyncio.create_task(b.start_consumer())
            out = await asyncio.to_thread(E.sb, "events", "request", "document.process",
                                          '{"doc_id":"9"}', "--timeout", "20")
            await b.stop_consumer()
            await task
            return json.loads(out.stdout)
        reply = run(serve())
        self.assertEqual(reply["doc"], "9")
        self.assertRegex(reply["event_id"], r"^[0-9a-f-]{36}$")

    def test_claims_dead_consumers_entries(self):
        s = "agent:stream:task.created"
        E.redis.xgroup_create(s, "agent-group", id="0", mkstream=True)
        for i in range(3):
            E.sb("events", "publish", "task.created", json.dumps({"task_id": str(i)}))
        # a consumer that read them and died: pending, never acknowledged
        E.redis.xreadgroup("agent-group", "ghost", {s: ">"}, count=10)
        got = run(self._consume("task.created", 3, self.bus(block_ms=100, min_idle_ms=50)))
        self.assertEqual(len(got), 3)
        self.assertEqual(E.redis.xpending(s, "agent-group")["pending"], 0)

    def test_dead_letters_and_idempotency(self):
        s = "agent:stream:task.created"
        E.redis.xadd(s, {"event_id": "x", "event_type": "task.created"})  # malformed
        E.sb("events", "publish", "task.created", '{"task_id":"poison"}')
        eid = "6f1c1b9e-1111-4111-8111-111111111111"
        for _ in range(2):  # the same event twice: handled once
            E.redis.xadd(s, {"event_id": eid, "event_type": "task.created",
                             "timestamp": _common.iso(), "data": '{"task_id":"dup"}'})
        E.sb("events", "publish", "task.created", '{"task_id":"last"}')
        seen = []

        async def handler(data):
            seen.append(data["task_id"])
            if data["task_id"] == "poison":
                raise DeadLetter("poison pill")
        run(self._consume("task.created", 3, self.bus(block_ms=100, idempotency_ttl=60),
                          handler))
        self.assertEqual(sorted(seen), ["dup", "last", "poison"])
        dead = E.redis.xrange("agent:stream:dead:task.created")
        reasons = sorted(f["reason"] for _, f in dead)
        self.assertEqual(reasons, ["missing field timestamp", "poison pill"])
        for _, f in dead:
            self.assertEqual(f["source_stream"], s)
            self.assertEqual(f["group"], "agent-group")
        self.assertTrue(E.redis.exists(f"agent:events:processed:agent-group:{eid}"))
        wait_for(lambda: E.redis.xpending(s, "agent-group")["pending"] == 0, "all acknowledged")
        # the C tool reads our dead letters
        info = E.sb("events", "info", "task.created").stdout
        self.assertIn("dead", info)


if __name__ == "__main__":
    unittest.main(verbosity=2)
