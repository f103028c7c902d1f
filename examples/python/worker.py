#!/usr/bin/python3
"""Seed 000's rebalance agent as a --worker handler: Switchboard's agent does the queue,
retries, status and recovery; this process only computes.

    switchboard agent --worker 'PYTHONPATH=clients/python exec /usr/bin/python3 examples/python/worker.py'
"""
from datetime import datetime, timezone

from switchboard import Permanent, worker


@worker
def rebalance(job):
    amount = job["payload"].get("amount")
    if not isinstance(amount, (int, float)) or amount <= 0:
        raise Permanent("Invalid amount")          # seed 000's validation: no retry
    fee = amount * 0.02
    return {"success": True, "originalAmount": amount, "fee": fee,
            "remainingAmount": amount - fee,
            "processedAt": datetime.now(timezone.utc).isoformat()}


if __name__ == "__main__":
    rebalance.run()
