#!/usr/bin/python3
"""Seed 001/002's producer in Python: queue a rebalance job and follow it to its end.

    PYTHONPATH=clients/python REDIS_URL=redis://127.0.0.1:6379 examples/python/producer.py 1000
"""
import json
import sys

from switchboard import Client

client = Client()
job_id = client.enqueue("rebalance", {"amount": float(sys.argv[1]) if len(sys.argv) > 1 else 1000,
                                      "priority": "high"},
                        user="GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq")
print(f"queued {job_id}", file=sys.stderr)
record = client.wait(job_id, timeout=300)   # status channel, polling fallback, 5 minutes
print(json.dumps(record))
sys.exit(0 if record["status"] == "done" else 1)
