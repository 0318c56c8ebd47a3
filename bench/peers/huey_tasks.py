"""Huey on Redis for ``bench/compare.py`` (``huey_consumer huey_tasks.huey``)."""

from __future__ import annotations

import os

from huey import RedisHuey
from mark import REDIS_URL, mark

# The defaults (blocking BRPOP reads, results kept only for tasks that return something).
huey = RedisHuey(os.environ.get("BENCH_QUEUE", "bench"), url=REDIS_URL)


@huey.task()
def mark_task(n: int, key: str, sleep: float = 0.0) -> None:
    mark(n, key, sleep)
