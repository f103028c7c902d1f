"""What every part of the package shares: settings from the environment (the binaries'
names), the Lua scripts of scripts/lua, ids, times and compact JSON as the C code writes it."""
import json
import os
import re
import secrets
import time
import uuid
from datetime import datetime, timezone

_LUA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua")
JOB_TTL = 86400                 # a record and a user's job index live this long (s)
METRICS_TTL = 7 * 86400         # daily counters
AUDIT_MAXLEN = 10000            # job.created stream, as SB_EVENTS_AUDIT_MAXLEN
HIST_BOUNDS = (10, 50, 100, 250, 500, 1000, 5000, 10000, 30000, 60000)

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_JOB_ID_RE = re.compile(r"^[0-9]{1,16}-[0-9a-z]{1,32}$")
_EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def lua(name):
    """The bytes of scripts/lua/{name}.lua, exactly as the C build embeds them."""
    with open(os.path.join(_LUA_DIR, name + ".lua"), "rb") as f:
        return f.read()


def env_int(name, default):
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {v!r}") from None


def redis_url():
    """REDIS_URL, or one built from REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    host = os.environ.get("REDIS_HOST", "127.0.0.1")
    port = env_int("REDIS_PORT", 6379)
    pw = os.environ.get("REDIS_PASSWORD")
    auth = f":{pw}@" if pw else ""
    return f"redis://{auth}{host}:{port}/{env_int('REDIS_DB', 0)}"


def dumps(obj):
    """Compact JSON, UTF-8 kept, NaN/Infinity refused (they are not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def now_ms():
    return int(time.time() * 1000)


def iso(ms=None):
    """2025-11-11T10:30:00.000Z, as the C code writes times."""
    ms = now_ms() if ms is None else ms
    d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def utc_date(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def new_job_id():
    return f"{now_ms()}-{secrets.token_hex(4)}"


def new_uuid():
    return str(uuid.uuid4())


def check_type(t):
    if not isinstance(t, str) or not _TYPE_RE.match(t):
        raise ValueError(f"bad job type {t!r}: ^[a-z][a-z0-9_-]{{0,31}}$")
    return t


def check_job_id(i):
    if not isinstance(i, str) or not _JOB_ID_RE.match(i):
        raise ValueError(f"bad job id {i!r}")
    return i


def check_event_type(t):
    if not isinstance(t, str) or not _EVENT_TYPE_RE.match(t):
        raise ValueError(f"bad event type {t!r}: 1-128 of [A-Za-z0-9._:-]")
    return t


def check_public_key(pk):
    ok = isinstance(pk, str) and 1 <= len(pk) <= 128 and all(33 <= ord(c) <= 126 for c in pk)
    if not ok:
        raise ValueError("bad user publicKey: 1-128 printable ASCII characters, no spaces")
    return pk
