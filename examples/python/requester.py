#!/usr/bin/python3
"""Seed 003's requester ("Backend" side): publish task.created, then a document.process
request, and print the response (or "Request timed out").

    PYTHONPATH=clients/python REDIS_URL=… examples/python/requester.py 456
"""
import asyncio
import json
import sys

from switchboard import event_bus


async def main():
    event_id = await event_bus.publish("task.created", {"task_id": "123", "priority": "high"})
    print(f"published task.created {event_id}", file=sys.stderr)
    response = await event_bus.request("document.process",
                                       {"doc_id": sys.argv[1] if len(sys.argv) > 1 else "456"},
                                       timeout=30)
    await event_bus.stop_consumer()  # closes the connection
    if response:
        print(json.dumps(response))
        return 0
    print("Request timed out", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
