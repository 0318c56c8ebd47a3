"""Tasks that tests/integration/test_tasks.py runs through real processes."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, TypedDict

from taskframe.core import PermanentError, Retry, current_job, task


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Options(TypedDict, total=False):
    label: str
    scale: float


def wait_for(flag: str, timeout: float = 60.0) -> None:
    """Until the test creates ``flag`` (the job stops early when cancelled)."""
    deadline = time.monotonic() + timeout
    job = current_job()
    while not Path(flag).exists():
        if job.cancel_event.wait(0.02) or time.monotonic() > deadline:
            raise TimeoutError(f"{flag} did not appear")


@task(queue="demo", priority=8, max_attempts=4, timeout=60)
def add(x: int, y: int = 2) -> int:
    """Add two integers."""
    return x + y


@task
def halfway(flag: str) -> str:
    """Report half progress, then wait for the flag file."""
    current_job().progress(0.5, "half way")
    wait_for(flag)
    return "done"


@task(max_attempts=3)
def retry_later(after: float, succeed_on: int) -> int:
    """Ask for a later attempt until attempt ``succeed_on``."""
    job = current_job()
    if job.attempt < succeed_on:
        raise Retry(after=after, reason=f"not before attempt {succeed_on}")
    return job.attempt


@task(max_attempts=3)
def permanent() -> None:
    raise PermanentError("no use retrying")


@task(max_attempts=3, retry_on=(ConnectionError,))
def picky(kind: Literal["value", "connection"]) -> None:
    if kind == "value":
        raise ValueError("not one to retry")
    raise ConnectionError("worth retrying")


@task(max_attempts=3)
def not_json() -> object:
    return {"when": datetime.now(timezone.utc)}


@task
async def double(x: float) -> float:
    """An async task."""
    await asyncio.sleep(0.01)
    current_job().progress(1.0, "doubled")
    return x * 2


@task
def follow_up(x: int) -> int:
    """Submit an ``add`` job with the worker's client; return its id."""
    return current_job().client.submit(add, x=x, y=10).id


@task
def shapes(
    point: Point,
    color: Color = Color.RED,
    tags: list[str] | None = None,
    options: Options | None = None,
) -> dict:
    """Nested payloads: a dataclass, an enum, a list, a TypedDict."""
    return {
        "point": [point.x, point.y],
        "color": color.value,
        "tags": tags or [],
        "options": options or {},
    }
