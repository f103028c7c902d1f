"""Switchboard for Python: a producer client, the seed 003 event bus, and --worker handlers.

    from switchboard import Client          # enqueue / job / wait / metrics / rate limit
    from switchboard import event_bus       # await event_bus.publish(...), @event_bus.subscribe
    from switchboard import worker          # @worker: a function as a `--worker` handler process

Everything speaks the wire format of the C binaries (README "Python"); the Lua scripts are
the very files the C build embeds (switchboard/lua -> scripts/lua). Settings come from the
environment as for the binaries (REDIS_URL, or REDIS_HOST/PORT/PASSWORD/DB; JOB_TYPE,
RATE_LIMIT, RATE_WINDOW; EVENTS_*)."""
from . import event_bus
from .client import Client, RateLimited, TIMEOUT_S
from .event_bus import EventBus, DeadLetter, EventData
from .worker import Permanent, worker

__all__ = ["Client", "RateLimited", "TIMEOUT_S", "event_bus", "EventBus", "DeadLetter",
           "EventData", "worker", "Permanent"]
