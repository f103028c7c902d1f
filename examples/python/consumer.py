#!/usr/bin/python3
"""Seed 003's consumer ("Agent" side), runnable: handles task.created and answers
document.process requests, as one consumer of the group agent-group, until SIGTERM/SIGINT.

    PYTHONPATH=clients/python REDIS_URL=… examples/python/consumer.py
"""
import asyncio
import os
import signal

from switchboard import event_bus


@event_bus.subscribe("task.created")
async def handle_task_created(data):
    task_id = data.get("task_id")
    print(f"Processing task: {task_id} (event {data.get('event_id')})", flush=True)


@event_bus.subscribe("document.process")
async def handle_document_process(data):
    doc_id = data.get("doc_id")
    result = {"doc_id": doc_id, "chunks": len(str(doc_id)) * 5}
    # the seed publishes to response_stream.split(":")[-1], which is not the response stream;
    # returning the reply sends it to data["response_stream"]
    return {"result": result, "status": "success"}


async def main():
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(event_bus.stop_consumer()))
    print("consumer started", flush=True)
    await event_bus.start_consumer(consumer_group="agent-group",
                                   consumer_name=f"agent-{os.getpid()}")


if __name__ == "__main__":
    asyncio.run(main())
