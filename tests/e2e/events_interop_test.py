#!/usr/bin/python3
"""End-to-end tests of the event bus: the seed 003 Python code (redis-py) against the real
`switchboard events` binary, on a private redis-server on a free port.

- the seed's publisher → our consumer (--exec), and our publisher → the seed's group consumer
- request/response both ways: the seed's requester → our `consume --respond`, and our
  `events request` → a Python responder
- a consumer killed with kill -9 mid-batch: a survivor claims its entries, every event is
  processed and acknowledged, none lost, duplicates suppressed by event_id
- a handler that runs longer than --min-idle-ms, with a second consumer polling: run once
- a poison entry and a malformed one end in the dead-letter stream

Every wait polls an observable state (a file, a Redis key, a process exit) with a deadline
that progress pushes back (a hang fails, a slow machine does not); nothing sleeps a fixed time
to let something happen, and no expectation depends on how fast the machine is.
Run with /usr/bin/python3 (Debian python3-redis); SB_BIN names the switchboard binary."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from datetime import datetime, timezone

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from sbpy import PY, REDIS_SERVER, SB_BIN, WAIT_S, free_port, wait_for  # noqa: E402


# ---- the seed's code (003), as written there, bound to our client -----------------------------

redis_client = None  # set by setUpModule, as the seed's module-level client


def publish_event(event_type, data):
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "data": json.dumps(data)
    }

    stream_name = f"agent:stream:{event_type}"
    redis_client.xadd(stream_name, event)
    return event


async def request_agent_action(action_type, params):
    correlation_id = str(uuid.uuid4())
    response_stream = f"agent:stream:response:{correlation_id}"

    # Publish request
    event = {
        "event_id": correlation_id,
        "event_type": action_type,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "data": json.dumps({
            **params,
            "response_stream": response_stream
        })
    }

    redis_client.xadd(f"agent:stream:{action_type}", event)

    # Wait for response (with timeout)
    start_time = time.time()
    timeout = 30

    while time.time() - start_time < timeout:
        messages = redis_client.xread({response_stream: "0"}, count=1, block=1000)
        if messages:
            for stream, msg_list in messages:
                for msg_id, msg_data in msg_list:
                    redis_client.delete(response_stream)
                    return json.loads(msg_data["data"])
        await asyncio.sleep(0.1)

    raise TimeoutError("No response received")


def seed_group_consumer(stream, count, consumer_name="agent-1"):
    """The seed's consumer-group loop: create the group, XREADGROUP, process, XACK."""
    try:
        redis_client.xgroup_create(stream, "agent-group", id="0", mkstream=True)
    except redis.ResponseError:
        pass
    got = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < count and time.monotonic() < deadline:
        messages = redis_client.xreadgroup("agent-group", consumer_name, {stream: ">"},
                                           count=10, block=1000)
        for s, msg_list in messages or []:
            for msg_id, msg_data in msg_list:
                got.append(msg_data)
                redis_client.xack(s, "agent-group", msg_id)
    return got


# ---- harness -------------------------------------------------------------------------------

_server = None
_dir = None
_url = None
_children = []


def setUpModule():
    global _server, _dir, _url, redis_client
    _dir = tempfile.mkdtemp(prefix="sb-events-e2e-")
    port = free_port()
    _server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", _dir],
                               stdout=subprocess.DEVNULL)
    _url = f"redis://127.0.0.1:{port}"
    redis_client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def up():
        try:
            return redis_client.ping()
        except redis.ConnectionError:
            return False
    wait_for(up, "redis-server to answer")


def tearDownModule():
    for c in _children:
        if c.poll() is None:
            c.kill()
            c.wait()
    _server.kill()
    _server.wait()
    shutil.rmtree(_dir, ignore_errors=True)


def env():
    e = dict(os.environ)
    e["REDIS_URL"] = _url
    e["LOG_LEVEL"] = "info"
    return e


def sb(*args, timeout=WAIT_S, check=True):
    p = subprocess.run([SB_BIN, "events", *args], env=env(), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"switchboard events {args} exited {p.returncode}: {p.stderr}")
    return p


def sb_start(*args, log=None):
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen([SB_BIN, "events", *args], env=env(), stdout=out, stderr=out)
    if log:
        out.close()  # the child has its own copy
    _children.append(p)
    return p


def script(name, body):
    path = os.path.join(_dir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def lines(path):
    try:
        with open(path) as f:
            return [l for l in f.read().splitlines() if l]
    except FileNotFoundError:
        return []


def redis_now_ms():
    sec, usec = redis_client.time()
    return sec * 1000 + usec // 1000


def pending(stream, group="agent-group"):
    try:
        return redis_client.xpending(stream, group)["pending"]
    except redis.ResponseError:
        return -1


class EventsInterop(unittest.TestCase):
    def setUp(self):
        redis_client.flushall()

    def test_seed_publisher_to_our_consumer(self):
        sent = [publish_event("task.created", {"task_id": f"task-{i}", "priority": "high"})
                for i in range(10)]
        # the second half starts in a later millisecond than the first ended, so that a replay
        # from its first timestamp must return exactly the second half
        last_ms = int(redis_client.xrevrange("agent:stream:task.created", count=1)[0][0].split("-")[0])
        wait_for(lambda: redis_now_ms() > last_ms, "the Redis clock to pass the 10th entry")
        sent += [publish_event("task.created", {"task_id": f"task-{i}", "priority": "high"})
                 for i in range(10, 20)]
        out = os.path.join(_dir, "consumed.jsonl")
        handler = script("record.sh", f'cat >> {out}; echo >> {out}\n')
        p = sb_start("consume", "task.created", "--exec", handler, "--max-events", "20",
                     "--block-ms", "200")
        wait_for(lambda: p.poll() is not None, "the consumer to exit after 20 events",
                 progress=lambda: len(lines(out)))
        self.assertEqual(p.returncode, 0)
        got = [json.loads(l) for l in lines(out)]
        self.assertEqual([g["event_id"] for g in got], [s["event_id"] for s in sent])
        for g, s in zip(got, sent):
            self.assertEqual(g["event_type"], "task.created")
            self.assertEqual(g["timestamp"], s["timestamp"])  # Python's isoformat, untouched
            self.assertEqual(g["data"], json.loads(s["data"]))
            self.assertEqual(g["deliveries"], 1)
        self.assertEqual(pending("agent:stream:task.created"), 0)
        # replay from a Python timestamp (microseconds, +00:00) finds the events from then on
        r = sb("replay", "task.created", "--from", sent[10]["timestamp"])
        replayed = [json.loads(l)["event_id"] for l in r.stdout.splitlines()]
        self.assertEqual(replayed, [s["event_id"] for s in sent[10:]])

    def test_our_publisher_to_seed_consumer(self):
        ids = [sb("publish", "task.created", json.dumps({"task_id": f"t{i}"})).stdout.strip()
               for i in range(5)]
        got = seed_group_consumer("agent:stream:task.created", 5)
        self.assertEqual(len(got), 5)
        for g, eid in zip(got, ids):
            self.assertEqual(set(g), {"event_id", "event_type", "timestamp", "data"})
            self.assertEqual(g["event_id"], eid)
            self.assertEqual(str(uuid.UUID(g["event_id"])), g["event_id"])
            self.assertEqual(g["event_type"], "task.created")
            self.assertIsNotNone(datetime.fromisoformat(g["timestamp"].replace("Z", "+00:00")))
            self.assertIn("task_id", json.loads(g["data"]))

    def test_seed_requester_to_our_responder(self):
        handler = (f"{PY} -c 'import sys, json; e = json.load(sys.stdin); "
                   "print(json.dumps({\"result\": {\"doc_id\": e[\"data\"][\"doc_id\"]}, "
                   "\"status\": \"success\"}))'")
        p = sb_start("consume", "document.process", "--exec", handler, "--respond",
                     "--block-ms", "200", log=os.path.join(_dir, "responder.log"))
        try:
            response = asyncio.run(request_agent_action("document.process", {"doc_id": "456"}))
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=WAIT_S), 0)  # SIGTERM: clean exit
        self.assertEqual(response, {"result": {"doc_id": "456"}, "status": "success"})
        self.assertEqual(redis_client.keys("agent:stream:response:*"), [])

    def test_our_requester_to_python_responder(self):
        stop = threading.Event()

        def responder():  # per SPEC §7: XADD the reply, in the seed's envelope, to response_stream
            stream = "agent:stream:document.process"
            try:
                redis_client.xgroup_create(stream, "agent-group", id="0", mkstream=True)
            except redis.ResponseError:
                pass
            while not stop.is_set():
                for s, msgs in redis_client.xreadgroup("agent-group", "py-responder", {stream: ">"},
                                                       count=10, block=200) or []:
                    for msg_id, msg in msgs:
                        data = json.loads(msg["data"])
                        reply = {"event_id": str(uuid.uuid4()), "event_type": "response",
                                 "timestamp": datetime.now(timezone.utc).isoformat(),
                                 "data": json.dumps({"result": data["doc_id"] * 2,
                                                     "status": "success",
                                                     "request_id": msg["event_id"]})}
                        redis_client.xadd(data["response_stream"], reply)
                        redis_client.xack(s, "agent-group", msg_id)

        t = threading.Thread(target=responder)
        t.start()
        try:
            r = sb("request", "document.process", '{"doc_id":"ab"}', "--timeout", "10")
        finally:
            stop.set()
            t.join()
        reply = json.loads(r.stdout)
        self.assertEqual(reply["result"], "abab")
        self.assertEqual(reply["status"], "success")
        self.assertEqual(redis_client.keys("agent:stream:response:*"), [])
        # and with nobody listening, a timeout: exit status 4 (README "Exit codes")
        r = sb("request", "nobody.home", "{}", "--timeout", "1", check=False)
        self.assertEqual(r.returncode, 4)

    def test_kill_9_mid_batch_loses_nothing(self):
        stream = "agent:stream:task.crash"
        sent = [publish_event("task.crash", {"n": i}) for i in range(30)]
        for ev in sent[:5]:  # a publisher retrying: the same events again
            redis_client.xadd(stream, ev)
        done_a, done_b = os.path.join(_dir, "done-A.log"), os.path.join(_dir, "done-B.log")
        gate = os.path.join(_dir, "gate")
        # A handles three events, then hangs in the fourth handler until it is killed: it dies
        # mid-batch at a known point, whatever the machine's speed.
        handler_a = script("crash-a.sh", f'cat > /dev/null\n'
                           f'if [ "$(wc -l < {done_a})" -ge 3 ]; then\n'
                           f'  echo "$SB_EVENT_ID" > {gate}; exec sleep 600\nfi\n'
                           f'echo "$SB_EVENT_ID" >> {done_a}\n')
        handler_b = script("crash-b.sh", f'cat > /dev/null; echo "$SB_EVENT_ID" >> {done_b}\n')
        open(done_a, "w").close()
        common = ["--count", "10", "--min-idle-ms", "500", "--idempotency-ttl", "600",
                  "--block-ms", "200"]
        a = sb_start("consume", "task.crash", "--consumer", "A", "--exec", handler_a, *common,
                     log=os.path.join(_dir, "A.log"))
        hung = wait_for(lambda: lines(gate), "consumer A to hang in its fourth handler",
                        progress=lambda: len(lines(done_a)))[0]
        a.kill()  # SIGKILL, mid-batch
        a.wait()
        self.assertEqual(lines(done_a), [e["event_id"] for e in sent[:3]])
        self.assertEqual(hung, sent[3]["event_id"])
        self.assertEqual(pending(stream), 7)  # A's batch of 10, three acknowledged
        b = sb_start("consume", "task.crash", "--consumer", "B", "--exec", handler_b, *common,
                     log=os.path.join(_dir, "B.log"))
        wait_for(lambda: pending(stream) == 0 and
                 redis_client.xinfo_groups(stream)[0]["lag"] == 0 and
                 len(set(lines(done_a) + lines(done_b))) == 30,
                 "every event processed and acknowledged",
                 progress=lambda: (pending(stream), len(lines(done_b))))
        b.send_signal(signal.SIGTERM)
        self.assertEqual(b.wait(timeout=WAIT_S), 0)
        # Exactly once each: A finished three and died in a handler that had not finished; B
        # ran everything else once (the five re-published entries suppressed by event_id).
        # At-least-once would allow a second run only of an event whose handler had finished
        # in A but was not acknowledged when A died; A's handlers had all been acknowledged.
        runs = lines(done_a) + lines(done_b)
        self.assertEqual(sorted(runs), sorted(e["event_id"] for e in sent))
        with open(os.path.join(_dir, "B.log")) as f:
            log = f.read()
        self.assertIn("already processed", log)
        self.assertNotIn("taken over", log)

    def test_handler_longer_than_min_idle_runs_once(self):
        # Handlers run 2.5 times --min-idle-ms while a second consumer polls all along: the
        # running consumer renews its claim, so nobody claims, kills or repeats the work.
        stream = "agent:stream:task.long"
        sent = [publish_event("task.long", {"n": i}) for i in range(2)]
        started, done = os.path.join(_dir, "long-started.log"), os.path.join(_dir, "long-done.log")
        handler = script("long.sh", f'cat > /dev/null; echo "$SB_EVENT_ID" >> {started}; '
                                    f'sleep 2.5; echo "$SB_EVENT_ID $SB_DELIVERIES" >> {done}\n')
        common = ["--exec", handler, "--min-idle-ms", "1000", "--block-ms", "100"]
        a = sb_start("consume", "task.long", "--consumer", "A", *common,
                     log=os.path.join(_dir, "long-A.log"))
        wait_for(lambda: lines(started), "consumer A to start the first handler")
        b = sb_start("consume", "task.long", "--consumer", "B", *common,
                     log=os.path.join(_dir, "long-B.log"))
        wait_for(lambda: len(lines(done)) == 2 and pending(stream) == 0,
                 "both events handled and acknowledged",
                 progress=lambda: (len(lines(started)), len(lines(done)), pending(stream)))
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=WAIT_S), 0)
        self.assertEqual(sorted(lines(started)), sorted(e["event_id"] for e in sent))
        self.assertEqual(sorted(lines(done)), sorted(f'{e["event_id"]} 1' for e in sent))
        self.assertEqual(redis_client.xlen("agent:stream:dead:task.long"), 0)
        for name in ("long-A.log", "long-B.log"):
            with open(os.path.join(_dir, name)) as f:
                log = f.read()
            self.assertNotIn("timed out", log)
            self.assertNotIn("taken over", log)

    def test_poison_and_malformed_entries_are_dead_lettered(self):
        stream = "agent:stream:task.poison"
        good = publish_event("task.poison", {"ok": True})
        poison = publish_event("task.poison", {"poison": True})
        redis_client.xadd(stream, {"event_id": str(uuid.uuid4()), "event_type": "task.poison",
                                   "timestamp": datetime.now(timezone.utc).isoformat(),
                                   "data": "{not json"})
        seen = os.path.join(_dir, "poison.log")
        handler = script("poison.sh", f'e=$(cat); echo "$SB_EVENT_ID" >> {seen}; '
                                      'case "$e" in *\\"poison\\":true*) echo boom >&2; exit 1;; esac\n')
        p = sb_start("consume", "task.poison", "--exec", handler, "--max-deliveries", "2",
                     "--min-idle-ms", "100", "--block-ms", "100",
                     log=os.path.join(_dir, "poison-consumer.log"))
        dead = "agent:stream:dead:task.poison"
        wait_for(lambda: redis_client.xlen(dead) == 2 and pending(stream) == 0,
                 "two dead letters and nothing pending",
                 progress=lambda: (len(lines(seen)), redis_client.xlen(dead), pending(stream)))
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=WAIT_S), 0)
        entries = {e["event_id"]: e for _, e in redis_client.xrange(dead)}
        self.assertIn(poison["event_id"], entries)
        d = entries[poison["event_id"]]
        self.assertEqual(d["data"], poison["data"])  # the original fields, kept
        self.assertEqual(d["deliveries"], "3")
        self.assertIn("max 2", d["reason"])
        self.assertEqual(d["source_stream"], stream)
        malformed = [e for e in entries.values() if e["data"] == "{not json"]
        self.assertEqual(len(malformed), 1)
        self.assertIn("not valid JSON", malformed[0]["reason"])
        runs = lines(seen)
        self.assertEqual(runs.count(poison["event_id"]), 2)  # max deliveries, then dead
        self.assertEqual(runs.count(good["event_id"]), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
