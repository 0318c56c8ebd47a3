"""Cron fire times in a time zone, DST included (pure functions, no clock of their own).

Cron expressions have 5 fields (minute to weekday) or 6 (a seconds field
last, croniter's convention). Fire times are wall-clock times in the
schedule's zone, walked with croniter on naive local times and converted to
UTC with :mod:`zoneinfo`:

- a wall time that does not exist (spring forward) fires at the first
  instant after the gap, once, however many times fell in it;
- a wall time that occurs twice (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

#: Fire times looked at before a schedule is declared never to fire.
MAX_STEPS = 100_000


class CronError(ValueError):
    """A cron expression or time zone that cannot be used (the message says why)."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc


def check(expression: str) -> None:
    """Raise CronError unless ``expression`` is a valid 5- or 6-field cron expression."""
    if not isinstance(expression, str) or len(expression.split()) not in (5, 6):
        raise CronError("a cron expression has 5 fields (or 6, with seconds last)")
    if not croniter.is_valid(expression):
        raise CronError(f"not a valid cron expression: {expression!r}")


def _wall(timestamp: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(timestamp, tz).replace(tzinfo=None)


def _instant(naive: datetime, tz: ZoneInfo) -> float:
    """The UTC timestamp of a local wall time; a time in a DST gap moves to the gap's end."""
    aware = naive.replace(tzinfo=tz, fold=0)
    if aware.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == naive:
        return aware.timestamp()
    probe = naive.replace(second=0, microsecond=0)
    for _ in range(48 * 60):  # gaps are whole minutes, a few hours at most
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=tz, fold=0)
        if aware.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == probe:
            return aware.timestamp()
    raise CronError("no valid local time after a DST gap")  # pragma: no cover


def next_fire(expression: str, tz_name: str, after: float) -> float:
    """The first fire time strictly after ``after`` (UTC timestamps)."""
    tz = zone(tz_name)
    walk = croniter(expression, _wall(after, tz))
    for _ in range(MAX_STEPS):
        instant = _instant(walk.get_next(datetime), tz)
        if instant > after:
            return instant
    raise CronError(f"{expression!r} does not fire")


class FireTimes:
    """``next_fire`` for many schedules at once, each expression parsed once.

    Parsing a cron expression costs more than stepping it: a housekeeper
    firing a thousand schedules a second keeps one walker per expression and
    moves it. Not thread-safe: one per thread (the firing housekeeper's).
    """

    MAX_CACHED = 4096

    def __init__(self) -> None:
        self._walks: dict[str, croniter] = {}
        # Schedules of one expression fall due together: each time is walked once.
        self._known: dict[tuple[str, str, float], float] = {}

    def next_fire(self, expression: str, tz_name: str, after: float) -> float:
        """The first fire time strictly after ``after``, as :func:`next_fire` gives it."""
        known = self._known.get((expression, tz_name, after))
        if known is not None:
            return known
        if len(self._known) >= self.MAX_CACHED:
            self._known.clear()
        found = self._known[expression, tz_name, after] = self._walk(expression, tz_name, after)
        return found

    def _walk(self, expression: str, tz_name: str, after: float) -> float:
        tz = zone(tz_name)
        walk = self._walks.get(expression)
        if walk is None:
            if len(self._walks) >= self.MAX_CACHED:
                self._walks.clear()
            walk = self._walks[expression] = croniter(expression, _wall(after, tz))
        else:
            walk.set_current(_wall(after, tz), force=True)
        for _ in range(MAX_STEPS):
            instant = _instant(walk.get_next(datetime), tz)
            if instant > after:
                return instant
        raise CronError(f"{expression!r} does not fire")


def next_fires(expression: str, tz_name: str, after: float, count: int) -> list[float]:
    times: list[float] = []
    for _ in range(count):
        after = next_fire(expression, tz_name, after)
        times.append(after)
    return times


def latest_fire(expression: str, tz_name: str, first: float, now: float) -> float:
    """The last fire time in ``[first, now]``, given that ``first`` is a fire time <= ``now``."""
    tz = zone(tz_name)
    walk = croniter(expression, _wall(now, tz) + timedelta(seconds=1))
    for _ in range(MAX_STEPS):
        instant = _instant(walk.get_prev(datetime), tz)
        if instant <= now:
            return max(instant, first)
    return first  # pragma: no cover - first is a fire time <= now


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
