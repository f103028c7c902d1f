"""Seed 003's event bus on Redis Streams, on redis.asyncio, in the wire format of
`switchboard events` (SPEC §7):

    from switchboard import event_bus
    event_id = await event_bus.publish("task.created", {"task_id": "123"})
    response = await event_bus.request("document.process", {"doc_id": "456"}, timeout=30)

    @event_bus.subscribe("task.created")
    async def handle_task(data): ...
    await event_bus.start_consumer(consumer_group="agent-group", consumer_name="agent-1")
    await event_bus.stop_consumer()

An event of type T is an entry of agent:stream:{T} with the fields event_id (UUID),
event_type, timestamp (ISO 8601 UTC), data (JSON text) and, when given, correlation_id.

The consumer reads as a group (XREADGROUP), acknowledges an entry only after its handler
returned, claims entries left pending by a dead consumer (or by a failed handler) with
XAUTOCLAIM once idle for min_idle_ms, dead-letters an entry delivered more than
max_deliveries times, or malformed, or whose handler raised DeadLetter, to
agent:stream:dead:{T} (its fields plus reason, deliveries, source_stream, source_id, group;
XADD and XACK in one MULTI), and with idempotency_ttl > 0 skips event ids already processed
(key agent:events:processed:{group}:{event_id}) - exactly as events_consumer.c does.
A handler gets the data as an EventData (a dict that also knows event_id, event_type,
timestamp, correlation_id and stream_id). When the event is a request (data.response_stream
is agent:stream:response:{id}), what the handler returns (not None) is sent as the response.

The module-level functions use one default bus configured from the environment (REDIS_URL…,
EVENTS_*); EventBus(...) makes others."""
import asyncio
import json
import logging
import os
import socket

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, TimeoutError as RedisTimeoutError

from . import _common as c

log = logging.getLogger("switchboard.events")
PREFIX = "agent:stream:"
RESPONSE_PREFIX = PREFIX + "response:"
DEAD_MAXLEN = 10000
RESPONSE_TTL = 300
CLAIM_ROUNDS = 8


class DeadLetter(Exception):
    """Raise from a handler to dead-letter the event now (no more deliveries)."""


class EventData(dict):
    """An event's data (a dict) with its envelope: .event_id, .event_type, .timestamp,
    .correlation_id, .stream_id. get("event_id") & co. fall back to the envelope when the data
    has no such member (seed 003's idempotency example reads data.get("event_id"))."""
    _ENVELOPE = ("event_id", "event_type", "timestamp", "correlation_id", "stream_id")

    def get(self, key, default=None):
        if key not in self and key in self._ENVELOPE:
            v = getattr(self, key, None)
            return default if v is None else v
        return super().get(key, default)


class EventBus:
    def __init__(self, url=None, *, maxlen=None, count=None, block_ms=None, min_idle_ms=None,
                 max_deliveries=None, idempotency_ttl=None, dead_maxlen=DEAD_MAXLEN):
        self._url = url
        self.maxlen = c.env_int("EVENTS_MAXLEN", 0) if maxlen is None else maxlen
        self.count = count or c.env_int("EVENTS_COUNT", 10)
        self.block_ms = block_ms or c.env_int("EVENTS_BLOCK_MS", 1000)
        self.min_idle_ms = min_idle_ms or c.env_int("EVENTS_MIN_IDLE_MS", 30000)
        self.max_deliveries = max_deliveries or c.env_int("EVENTS_MAX_DELIVERIES", 5)
        self.idempotency_ttl = (c.env_int("EVENTS_IDEMPOTENCY_TTL", 0)
                                if idempotency_ttl is None else idempotency_ttl)
        self.dead_maxlen = dead_maxlen
        self.handlers = {}
        self._redis = None
        self._stop = None
        self._task = None
        self._keep_sha = None
        self.group = None
        self.consumer = None

    @property
    def redis(self):
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(self._url or c.redis_url(),
                                                  decode_responses=True)
        return self._redis

    # ---- publishing ---------------------------------------------------------------------

    async def publish(self, event_type, data, correlation_id=None, *, event_id=None):
        """XADDs an event of event_type with data (JSON-serializable) and returns its
        event_id."""
        c.check_event_type(event_type)
        event_id = event_id or c.new_uuid()
        fields = {"event_id": event_id, "event_type": event_type, "timestamp": c.iso(),
                  "data": c.dumps(data)}
        if correlation_id is not None:
            fields["correlation_id"] = str(correlation_id)
        kw = {"maxlen": self.maxlen, "approximate": True} if self.maxlen > 0 else {}
        await self.redis.xadd(PREFIX + event_type, fields, **kw)
        return event_id

    async def request(self, event_type, data, timeout=30):
        """Publishes a request (data plus response_stream) and waits up to timeout seconds
        for the response; returns its data, or None when none came (seed 003)."""
        if not isinstance(data, dict):
            raise ValueError("request data must be a dict")
        cid = c.new_uuid()
        stream = RESPONSE_PREFIX + cid
        await self.publish(event_type, {**data, "response_stream": stream}, event_id=cid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                # its own connection: a BLOCK must not hold up the bus's other commands
                got = await self.redis.xread({stream: "0"}, count=1,
                                             block=max(1, int(min(left, 1.0) * 1000)))
                for _, entries in got or []:
                    for _, fields in entries:
                        return json.loads(fields["data"])
        finally:
            await self.redis.delete(stream)

    async def respond(self, request, reply):
        """XADDs reply as the response to request (an EventData that carries
        response_stream), with correlation_id = the request's event id. Returns False when the
        event is not a request."""
        stream = _response_stream(request)
        if not stream:
            return False
        fields = {"event_id": c.new_uuid(), "event_type": stream[len(PREFIX):],
                  "timestamp": c.iso(), "data": c.dumps(reply),
                  "correlation_id": request.event_id}
        async with self.redis.pipeline(transaction=False) as p:
            p.xadd(stream, fields)
            p.expire(stream, RESPONSE_TTL)
            await p.execute()
        return True

    # ---- subscribing --------------------------------------------------------------------

    def subscribe(self, event_type):
        """Decorator: the async function handles events of event_type."""
        c.check_event_type(event_type)

        def register(fn):
            if not asyncio.iscoroutinefunction(fn):
                raise TypeError("event handlers must be async functions")
            if event_type in self.handlers:
                raise ValueError(f"{event_type} already has a handler")
            self.handlers[event_type] = fn
            return fn
        return register

    async def start_consumer(self, consumer_group="agent-group", consumer_name=None):
        """Consumes the subscribed types as consumer_name in consumer_group until
        stop_consumer(). Survives a lost Redis (logs it and reconnects with backoff)."""
        if not self.handlers:
            raise ValueError("nothing subscribed")
        self.group = consumer_group or os.environ.get("EVENTS_GROUP") or "agent-group"
        self.consumer = (consumer_name or os.environ.get("EVENTS_CONSUMER")
                         or f"{socket.gethostname()}-{os.getpid()}")
        self._stop = asyncio.Event()
        self._task = asyncio.current_task()
        backoff = 0.1
        ready = False
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                if not ready:
                    await self._create_groups()
                    ready = True
                if loop.time() >= next_claim:
                    await self._claim()
                    next_claim = loop.time() + min(self.min_idle_ms / 2, 5000) / 1000
                await self._read()
                backoff = 0.1
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                log.warning("redis lost (%s); reconnecting in %.1f s", e, backoff)
                ready = False
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except ResponseError as e:
                if str(e).startswith("NOGROUP"):
                    ready = False
                else:
                    log.error("redis refused: %s", e)
                    await self._sleep(self.block_ms / 1000)
            except Exception:  # noqa: BLE001 - a long-running consumer never dies of it
                log.exception("consumer step failed; going on")
                await self._sleep(self.block_ms / 1000)

    async def stop_consumer(self):
        """Ends start_consumer after the event in hand, and closes the connection."""
        if self._stop:
            self._stop.set()
        if self._task and self._task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.block_ms / 1000 + 5)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pass
        if self._redis is not None:
            await self._redis.close(close_connection_pool=True)
            self._redis = None

    async def _sleep(self, s):
        try:
            await asyncio.wait_for(self._stop.wait(), s)
        except asyncio.TimeoutError:
            pass

    # ---- the consumer's steps (as src/lib/events_consumer.c) ------------------------------

    async def _create_groups(self):
        for t in self.handlers:
            try:
                await self.redis.xgroup_create(PREFIX + t, self.group, id="0", mkstream=True)
            except ResponseError as e:
                if not str(e).startswith("BUSYGROUP"):
                    raise

    async def _read(self):
        loop = asyncio.get_running_loop()
        streams = {PREFIX + t: ">" for t in self.handlers}
        got = await self.redis.xreadgroup(self.group, self.consumer, streams,
                                          count=self.count, block=self.block_ms)
        at = loop.time()
        for stream, entries in got or []:
            for entry_id, fields in entries:
                if self._stop.is_set():
                    return  # left pending: claimed again later, never lost
                await self._handle(stream, entry_id, fields, 1, at)

    async def _claim(self):
        loop = asyncio.get_running_loop()
        for t in self.handlers:
            stream, cursor = PREFIX + t, "0-0"
            for _ in range(CLAIM_ROUNDS):
                res = await self.redis.execute_command(
                    "XAUTOCLAIM", stream, self.group, self.consumer, self.min_idle_ms, cursor,
                    "COUNT", self.count)
                cursor, entries = res[0], res[1]
                at = loop.time()
                for entry in entries:
                    if not entry or self._stop.is_set():
                        continue
                    entry_id, fields = entry[0], entry[1] or {}
                    if not isinstance(fields, dict):  # redis-py parses it, or not
                        fields = dict(zip(fields[::2], fields[1::2]))
                    p = await self.redis.xpending_range(stream, self.group, entry_id, entry_id, 1)
                    n = p[0]["times_delivered"] if p else 2
                    await self._handle(stream, entry_id, fields, n, at)
                if cursor == "0-0":
                    break

    async def _still_ours(self, stream, entry_id, got_at):
        """An entry that waited in our batch more than half of min_idle_ms is re-claimed by
        scripts/lua/events_keep.lua first (skipped if another consumer took it)."""
        if asyncio.get_running_loop().time() - got_at <= self.min_idle_ms / 2000:
            return True
        src = c.lua("events_keep")
        try:
            if self._keep_sha is None:
                raise ResponseError("NOSCRIPT")
            r = await self.redis.evalsha(self._keep_sha, 1, stream, self.group, self.consumer,
                                         entry_id)
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
            self._keep_sha = await self.redis.script_load(src)
            r = await self.redis.evalsha(self._keep_sha, 1, stream, self.group, self.consumer,
                                         entry_id)
        return int(r[0]) == 1

    async def _handle(self, stream, entry_id, fields, deliveries, got_at):
        if not await self._still_ours(stream, entry_id, got_at):
            return
        event_type = stream[len(PREFIX):]
        data, why = _parse(fields)
        if deliveries > self.max_deliveries:
            return await self._dead(stream, entry_id, fields, deliveries,
                                    f"delivered {deliveries} times (max {self.max_deliveries})",
                                    data)
        if why:
            return await self._dead(stream, entry_id, fields, deliveries, why, data)
        ev = EventData(data if isinstance(data, dict) else {"value": data})
        ev.event_id, ev.event_type = fields["event_id"], fields["event_type"]
        ev.timestamp, ev.correlation_id = fields["timestamp"], fields.get("correlation_id")
        ev.stream_id = entry_id
        pkey = f"agent:events:processed:{self.group}:{ev.event_id}"
        if self.idempotency_ttl > 0 and await self.redis.exists(pkey):
            log.info("event %s (%s) already processed: acknowledged", ev.event_id, event_type)
            return await self._ack(stream, entry_id, pkey)
        try:
            reply = await self.handlers[event_type](ev)
        except DeadLetter as e:
            return await self._dead(stream, entry_id, fields, deliveries,
                                    str(e) or "handler gave up", ev)
        except Exception as e:  # noqa: BLE001 - any failure: delivered again later
            log.warning("event %s (%s, entry %s) failed on delivery %d of %d: %s; delivered "
                        "again after %d ms", ev.event_id, event_type, entry_id, deliveries,
                        self.max_deliveries, e, self.min_idle_ms)
            return
        if reply is not None:
            await self.respond(ev, reply)
        await self._ack(stream, entry_id, pkey)

    async def _ack(self, stream, entry_id, pkey):
        async with self.redis.pipeline(transaction=False) as p:
            if self.idempotency_ttl > 0:
                p.set(pkey, 1, ex=self.idempotency_ttl, nx=True)
            p.xack(stream, self.group, entry_id)
            await p.execute()

    async def _dead(self, stream, entry_id, fields, deliveries, reason, data):
        event_type = stream[len(PREFIX):]
        dead = {**fields, "reason": reason, "deliveries": deliveries, "source_stream": stream,
                "source_id": entry_id, "group": self.group}
        kw = {"maxlen": self.dead_maxlen, "approximate": True} if self.dead_maxlen > 0 else {}
        async with self.redis.pipeline(transaction=True) as p:
            p.xadd(PREFIX + "dead:" + event_type, dead, **kw)
            p.xack(stream, self.group, entry_id)
            await p.execute()
        log.warning("event %s (%s, entry %s) dead-lettered: %s", fields.get("event_id", "?"),
                    event_type, entry_id, reason)
        if isinstance(data, dict) and fields.get("event_id"):
            req = EventData(data)
            req.event_id = fields["event_id"]
            await self.respond(req, {"status": "error", "error": reason})


def _parse(fields):
    """(data, None) for a well-formed entry, (data or None, reason) for a malformed one."""
    for f in ("event_id", "event_type", "timestamp", "data"):
        if f not in fields:
            return None, f"missing field {f}"
    try:
        return json.loads(fields["data"]), None
    except ValueError:
        return None, "data is not valid JSON"


def _response_stream(ev):
    rs = ev.get("response_stream") if isinstance(ev, dict) else None
    ok = isinstance(rs, str) and rs.startswith(RESPONSE_PREFIX)
    return rs if ok and c._EVENT_TYPE_RE.match(rs[len(PREFIX):]) else None


# ---- the default bus: `from switchboard import event_bus` ----------------------------------

_default = None


def default_bus():
    global _default
    if _default is None:
        _default = EventBus()
    return _default


async def publish(event_type, data, correlation_id=None):
    return await default_bus().publish(event_type, data, correlation_id)


async def request(event_type, data, timeout=30):
    return await default_bus().request(event_type, data, timeout)


async def respond(request_data, reply):
    return await default_bus().respond(request_data, reply)


def subscribe(event_type):
    return default_bus().subscribe(event_type)


async def start_consumer(consumer_group="agent-group", consumer_name=None):
    return await default_bus().start_consumer(consumer_group, consumer_name)


async def stop_consumer():
    return await default_bus().stop_consumer()
