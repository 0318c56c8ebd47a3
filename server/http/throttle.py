"""Failed authentications: throttled per client address, and logged summed.

A caller guessing tokens gets ``--max-auth-failures`` bad tokens per
:data:`WINDOW`; past it, every request of its address that carries a token
is answered 429 with ``Retry-After`` (checked before the token, so a right
guess tells nothing either) until enough of those failures are older than
the window. IPv6 addresses count per /64, the block one host usually has.

Refusals are logged once per client address and reason per
:data:`LOG_PERIOD`, and the rest as one summary line at the end of it, so an
attacker's thousands of requests cost a few log lines.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

WINDOW = 60.0
LOG_PERIOD = 60.0
#: Addresses (and address, reason pairs) remembered at most; past it the oldest go.
MAX_TRACKED = 10000


@functools.lru_cache(maxsize=4096)  # asked for every request that carries a token
def client_key(address: str | None) -> str:
    """The address a limit applies to: IPv4 as is, IPv6 by its /64."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


class AuthThrottle:
    """At most ``max_failures`` failed authentications per client address per ``window``."""

    def __init__(
        self,
        max_failures: int,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_tracked = max_tracked
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until ``address`` may try a token again, or None when it may now."""
        key = client_key(address)
        with self._lock:
            times = self._failures.get(key)
            if times is None or len(times) < self.max_failures:
                return None
            wait = times[0] + self.window - self.clock()
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, address: str | None) -> bool:
        """Count a failure; True when it is the one that throttles ``address``."""
        key = client_key(address)
        now = self.clock()
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                if len(self._failures) >= self.max_tracked:
                    self._forget(now)
                times = self._failures[key] = deque(maxlen=self.max_failures)
            while times and times[0] <= now - self.window:
                times.popleft()
            times.append(now)
            return len(times) == self.max_failures

    def _forget(self, now: float) -> None:
        """Drop the addresses with no failure in the window; if none, the oldest tenth."""
        stale = [key for key, times in self._failures.items() if times[-1] <= now - self.window]
        if not stale:
            stale = list(self._failures)[: max(1, self.max_tracked // 10)]
        for key in stale:
            del self._failures[key]


class RefusalLog:
    """Refused requests: the first per (client, reason) logged, the rest summed per period."""

    def __init__(self, logger: logging.Logger, period: float = LOG_PERIOD) -> None:
        self.log = logger
        self.period = period
        self._lock = threading.Lock()
        self._more: dict[tuple[str, str], int] = {}  # (client, reason) -> refusals not logged
        self._timer: threading.Timer | None = None

    def refused(self, req: Any, reason: str, detail: str = "") -> None:
        """Note a refusal of ``req``; ``reason`` is its kind, ``detail`` only for the first."""
        # The client address and scheme are right behind a proxy given --trusted-proxy.
        key = (client_key(req.remote_addr), reason)
        with self._lock:
            first = key not in self._more
            if first and len(self._more) >= MAX_TRACKED:
                key, first = ("other clients", reason), False
            self._more[key] = self._more.get(key, -1 if first else 0) + 1
            if self._timer is None:
                self._timer = threading.Timer(self.period, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if first:
            self.log.info(
                "refused %s %s from %s: %s%s (more from it are summed every %gs)",
                *(req.method, req.url, req.remote_addr, reason, detail, self.period),
            )

    def flush(self) -> None:
        """Log the refusals not logged yet as one line, and start a new period."""
        with self._lock:
            counts, self._more, self._timer = self._more, {}, None
        more = sorted(((n, key) for key, n in counts.items() if n > 0), reverse=True)
        if not more:
            return
        total = sum(n for n, _ in more)
        shown = "; ".join(f"{client}: {n} {reason}" for n, (client, reason) in more[:10])
        rest = f"; and {len(more) - 10} more clients or reasons" if len(more) > 10 else ""
        self.log.warning(
            "refused %d more request(s) in the last %gs: %s%s", total, self.period, shown, rest
        )

    def close(self) -> None:
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self.flush()


def throttle_options(group: Any) -> None:
    """``--max-auth-failures``, for the server's security group."""
    from taskframe.core.options import add_option
    from taskframe.server.http.access import AccessConfig

    add_option(
        group,
        "--max-auth-failures",
        type=int,
        default=AccessConfig().max_auth_failures,
        help="bad tokens one client address (an IPv6 /64) may send per minute; past it its "
        "requests with a token are answered 429 with Retry-After (0: no limit)",
    )
