"""A Python function as a `switchboard agent --worker CMD` handler process.

    from switchboard import worker, Permanent

    @worker
    def rebalance(job):                      # job: {"jobId","type","payload","user","attempt"}
        if job["payload"].get("amount", 0) <= 0:
            raise Permanent("amount must be > 0")   # fails the job for good (retry:false)
        return {"fee": job["payload"]["amount"] * 0.02}

    if __name__ == "__main__":
        rebalance.run()

run() reads one job per line on stdin and answers each with one line on stdout:
{"jobId","result"} for a return value, {"jobId","error","retry":false} for Permanent,
{"jobId","error","retry":true} for any other exception (its traceback goes to stderr, which
the agent logs with the job id). While the function runs, sys.stdout is stderr, so a stray
print() cannot break the protocol. Async functions work too (one event loop for the process).
It returns when stdin closes (the agent shutting down)."""
import asyncio
import functools
import json
import sys
import traceback


class Permanent(Exception):
    """Raise to fail the job at once, without further attempts."""


def worker(fn):
    """Decorator: fn(job) gets .run(), the handler loop of the --worker protocol."""

    @functools.wraps(fn)
    def wrapper(job):
        return fn(job)
    wrapper.run = functools.partial(run, fn)
    return wrapper


def _answer(fn, job, loop):
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = fn(job)
        if asyncio.iscoroutine(result):
            result = loop.run_until_complete(result)
        return {"jobId": job["jobId"], "result": result}
    except Permanent as e:
        return {"jobId": job["jobId"], "error": str(e) or "failed", "retry": False}
    except Exception as e:  # noqa: BLE001 - every failure is an answer
        traceback.print_exc()
        return {"jobId": job["jobId"], "error": f"{type(e).__name__}: {e}", "retry": True}
    finally:
        sys.stdout = out


def run(fn, stdin=None, stdout=None):
    """The protocol loop over stdin/stdout (or the given binary streams)."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    loop = asyncio.new_event_loop()
    try:
        for line in stdin:
            job = json.loads(line)
            reply = _answer(fn, job, loop)
            try:
                text = json.dumps(reply, separators=(",", ":"), ensure_ascii=False,
                                  allow_nan=False)
            except (TypeError, ValueError) as e:
                text = json.dumps({"jobId": job["jobId"], "retry": False,
                                   "error": f"result is not JSON: {e}"})
            stdout.write(text.encode() + b"\n")
            stdout.flush()
    finally:
        loop.close()
