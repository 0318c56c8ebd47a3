"""Celery on Redis for ``bench/compare.py`` (``celery -A celery_tasks worker``)."""

from __future__ import annotations

import os

from celery import Celery
from mark import REDIS_URL, mark

app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench"),
    task_ignore_result=True,  # the docs' advice when results are not used
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="mark")
def mark_task(n: int, key: str, sleep: float = 0.0) -> None:
    mark(n, key, sleep)
