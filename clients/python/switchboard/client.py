"""The producer side (seeds 001/002): enqueue a job, read it, wait for its end, metrics, rate limit.

Enqueue runs scripts/lua/submit.lua, the script the gateway and `switchboard enqueue` run:
the record (SET EX 1 day), the id on agent:{type}:jobs (LPUSH), the user index, the day's
`jobs` counter, the job.created audit event and the `{type}:created` notification for the
gateways' Socket.IO rooms, all in one atomic step. check_rate_limit runs the same script with
no job (the sliding window only)."""
import json
import time

import redis

from . import _common as c

TIMEOUT_S = 300          # wait(): 5 minutes, as seed 001 recommends
POLL_S = 2.0             # wait(): the record is read at least this often (the fallback)
FINAL = ("done", "error", "cancelled")


class RateLimited(Exception):
    """enqueue(rate_user=…) was refused; retry_ms says when the window has room."""

    def __init__(self, retry_ms):
        super().__init__(f"rate limited: retry in {retry_ms} ms")
        self.retry_ms = retry_ms


class Client:
    """A blocking client (redis-py). type: the default job type (JOB_TYPE, else rebalance)."""

    def __init__(self, url=None, *, type=None, redis_client=None):
        self.redis = redis_client or redis.Redis.from_url(url or c.redis_url(),
                                                          decode_responses=True)
        self.type = c.check_type(type or __import__("os").environ.get("JOB_TYPE") or "rebalance")
        self._submit = self.redis.register_script(c.lua("submit"))
        self._stats = self.redis.register_script(c.lua("exec_stats"))

    # ---- jobs ---------------------------------------------------------------------------

    def enqueue(self, type, payload, user, *, user_id=None, rate_user=None, limit=None,
                window=None):
        """Queues a job of `type` for `user` (a publicKey, or {"publicKey", "id"}) and returns
        its id. payload: any JSON value. With rate_user, the user's sliding window (RATE_LIMIT
        per RATE_WINDOW s unless given) is checked first and RateLimited raised when full."""
        c.check_type(type)
        if isinstance(user, dict):
            user_id = user.get("id", user_id)
            user = user.get("publicKey")
        c.check_public_key(user)
        job_id, now = c.new_job_id(), c.now_ms()
        u = {"publicKey": user}
        if user_id is not None:
            u["id"] = str(user_id)
        record = c.dumps({"jobId": job_id, "type": type, "status": "queued", "user": u,
                          "payload": payload, "attempts": 0, "createdAt": c.iso(now),
                          "updatedAt": c.iso(now)})
        event = c.dumps({"jobId": job_id, "type": type, "userId": user})
        created = c.dumps({"event": f"{type}:created", "room": f"user:{user}",
                           "data": {"jobId": job_id}})
        keys, args = self._rate_args(type, rate_user, limit, window, now)
        keys += [f"agent:{type}:job:{job_id}", f"agent:{type}:jobs",
                 f"agent:{type}:user:{user}",
                 f"metrics:agent:{type}:counters:{c.utc_date(now)}:jobs",
                 "agent:stream:job.created", f"agent:{type}:index",
                 f"agent:{type}:hist:{job_id}"]
        args += [job_id, record, c.JOB_TTL, now, c.AUDIT_MAXLEN, c.new_uuid(), "job.created",
                 c.iso(now), event, f"agent:{type}:events", created, user]
        allowed, _, retry = self._submit(keys=keys, args=args)
        if not allowed:
            raise RateLimited(int(retry))
        return job_id

    def _rate_args(self, type, user, limit, window, now):
        """KEYS 1-3 and ARGV 1-4 of submit.lua (empty without a rate user)."""
        import secrets
        window = window or c.env_int("RATE_WINDOW", 60)
        if user is None:
            return ["", "", ""], [0, window * 1000, "", c.METRICS_TTL]
        limit = limit or c.env_int("RATE_LIMIT", 10)
        if not isinstance(user, str) or not 1 <= len(user) <= 128 or limit < 1:
            raise ValueError("bad rate user or limit")
        day = c.utc_date(now)
        return ([f"metrics:agent:{type}:rate:{user}",
                 f"metrics:agent:{type}:counters:{day}:rate_hits",
                 f"metrics:agent:{type}:counters:{day}:rate_blocked"],
                [limit, window * 1000, secrets.token_hex(8), c.METRICS_TTL])

    def job(self, job_id, type=None):
        """The job record (a dict), or None when there is none (never was, or expired)."""
        type = c.check_type(type or self.type)
        raw = self.redis.get(f"agent:{type}:job:{c.check_job_id(job_id)}")
        return json.loads(raw) if raw is not None else None

    def wait(self, job_id, timeout=TIMEOUT_S, type=None):
        """Follows the job on agent:{type}:status and returns its final record (status done,
        error or cancelled). The record is also read every POLL_S, so a missed message (or no
        agent publishing) costs at most that. Raises TimeoutError after timeout seconds and
        LookupError when the record does not exist."""
        type = c.check_type(type or self.type)
        c.check_job_id(job_id)
        deadline = time.monotonic() + timeout
        with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
            ps.subscribe(f"agent:{type}:status")
            while True:
                rec = self.job(job_id, type)  # after SUBSCRIBE: no update can slip between
                if rec is None:
                    raise LookupError(f"job {job_id} ({type}) not found")
                if rec.get("status") in FINAL:
                    return rec
                poll_until = min(deadline, time.monotonic() + POLL_S)
                while time.monotonic() < poll_until:
                    msg = ps.get_message(timeout=max(0.0, poll_until - time.monotonic()))
                    if msg and _final_for(msg.get("data"), job_id):
                        break
                if time.monotonic() >= deadline:
                    rec = self.job(job_id, type)
                    if rec and rec.get("status") in FINAL:
                        return rec
                    raise TimeoutError(f"job {job_id} not finished after {timeout} s")

    # ---- metrics (seed 002) ---------------------------------------------------------------

    def metrics_summary(self, days=7, type=None):
        """{"totalJobs","failedJobs","doneJobs","avgExecutionTime","p95ExecutionTime",
        "rateLimit":{"hits","blocked"}} over the last `days` UTC days (1-30), times in ms."""
        type = c.check_type(type or self.type)
        if not isinstance(days, int) or not 1 <= days <= 30:
            raise ValueError("days must be 1..30")
        names = ("jobs", "failed", "done", "rate_hits", "rate_blocked")
        now = c.now_ms()
        pipe = self.redis.pipeline(transaction=False)
        for d in range(days):
            day = c.utc_date(now - d * 86400000)
            pipe.mget([f"metrics:agent:{type}:counters:{day}:{n}" for n in names])
        sums = [0] * len(names)
        for row in pipe.execute():
            for i, v in enumerate(row):
                sums[i] += int(v or 0)
        st = self._stats(keys=[f"metrics:agent:{type}:execution_times"], args=list(c.HIST_BOUNDS))
        count, total, p95 = int(st[0]), float(st[1]), float(st[2])
        return {"totalJobs": sums[0], "failedJobs": sums[1], "doneJobs": sums[2],
                "avgExecutionTime": round(total / count, 2) if count else 0,
                "p95ExecutionTime": p95, "rateLimit": {"hits": sums[3], "blocked": sums[4]}}

    def check_rate_limit(self, user, limit=None, window=None, type=None):
        """Seed 002's checkRateLimit(user, 10, 60): records the request in the user's sliding
        window and returns True, or returns False when the window is full."""
        type = c.check_type(type or self.type)
        keys, args = self._rate_args(type, user, limit, window, c.now_ms())
        keys += [""] * 7
        args += ["", "", c.JOB_TTL, 0, c.AUDIT_MAXLEN, "", "", "", "", "", "", ""]
        allowed, _, _ = self._submit(keys=keys, args=args)
        return bool(allowed)

    def close(self):
        self.redis.close()


def _final_for(raw, job_id):
    try:
        m = json.loads(raw)
    except (TypeError, ValueError):
        return False
    return isinstance(m, dict) and m.get("jobId") == job_id and m.get("status") in FINAL
