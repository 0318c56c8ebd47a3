"""The task body shared by every system in ``bench/compare.py``: one Redis round trip.

``INCR <key>:count`` and ``SETBIT <key>:bits <n> 1`` in one pipeline: the
counter tells the benchmark how many jobs ran, the bitmap that each ran once.
The taskframe executor (``bench/plugin``) does exactly the same.
"""

from __future__ import annotations

import os
import threading
import time

import redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_local = threading.local()  # one connection per worker thread or process


def mark(n: int, key: str, sleep: float = 0.0) -> None:
    if sleep:
        time.sleep(sleep)
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = redis.Redis.from_url(REDIS_URL)
    pipe = client.pipeline(transaction=False)
    pipe.incr(key + ":count")
    pipe.setbit(key + ":bits", n, 1)
    pipe.execute()
