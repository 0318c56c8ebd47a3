"""One webhook POST, within a total deadline, through the ``http`` executor's guard.

Where a delivery may connect is decided by :mod:`taskframe.plugins.http_guard`
(the ``http`` executor's rules and profiles), on the address actually
connected to. Redirects are not followed: the adapter is called directly
(``requests.Session`` would read a redirect's whole body even unfollowed).
Beyond the guard:

- A deadline for the whole attempt (connect, send, answer). Socket timeouts
  bound each read, and a receiver that trickles a byte now and then stays
  under them forever; a :class:`Watchdog` thread shuts down the sockets of
  an attempt past its deadline, which ends any read or write in progress.
  (A slow DNS lookup is not interrupted: it is bounded by the resolver.)
- At most :data:`MAX_ANSWER` bytes of the answer are read: a 2xx is judged by
  its status and closed unread, and of any other the start is kept for the log.
- Never this server's own API: a connection to the server's port on a local
  address is refused before anything is sent.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from taskframe.plugins.http_adapter import GuardedAdapter
from taskframe.plugins.http_guard import Policy, TargetDenied

#: Bytes of a non-2xx answer kept for the log; a 2xx answer is not read at all.
MAX_ANSWER = 1024


class DeadlinePassed(requests.exceptions.Timeout):
    """The attempt was cut off at its total deadline."""


@dataclass(frozen=True)
class Answer:
    status: int
    #: The first bytes of a non-2xx answer's body (nothing of a 2xx).
    start: bytes = b""


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: Policy,
    timeout: float,
    watchdog: Watchdog,
    server_port: int | None = None,
) -> Answer:
    """POST ``body`` to ``url``, all within ``timeout`` seconds.

    Raises :class:`TargetDenied` (refused by the rules, nothing sent),
    :class:`DeadlinePassed`, or another ``requests`` exception.
    """
    adapter = _Adapter(policy, server_port)
    try:
        prepared = requests.Request("POST", url, headers=headers, data=body).prepare()
        with watchdog.watch(timeout) as watch:
            try:
                response = adapter.send(
                    prepared, stream=True, timeout=(timeout, timeout), verify=True, proxies={}
                )
            except requests.RequestException as exc:
                if watch.expired:
                    raise DeadlinePassed(f"no answer within the deadline of {timeout:g} s") from exc
                raise
            try:
                status = response.status_code
                start = b"" if 200 <= status < 300 else _start_of(response)
            finally:
                response.close()  # unread: the connection is closed, not drained
    finally:
        adapter.close()
    return Answer(status, start)


def _start_of(response: requests.Response) -> bytes:
    try:
        return response.raw.read(MAX_ANSWER, decode_content=False) or b""
    except Exception:  # cut off by the deadline or the receiver: the status is enough
        return b""


# -- the deadline -----------------------------------------------------------------------

_current = threading.local()


class _Watch:
    """One attempt's deadline and copies of the sockets it opened (to shut them down)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the same connection: TLS takes over the original
        # socket object, and shutting down either ends the connection for both.
        copy = sock.dup()
        with self._lock:
            if self._done:
                copy.close()
                return
            self._sockets.append(copy)
            if self.expired:
                _shut(copy)

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            self._done = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed by the other end already


class Watchdog:
    """Ends attempts at their deadlines: one thread for all of a sender's attempts."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, seconds: float) -> Iterator[_Watch]:
        """Watch the sockets this thread opens in the block, for ``seconds`` at most."""
        watch = _Watch(time.monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify()
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = None
            watch.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, watch = heapq.heappop(self._heap)
            watch.expire()  # a no-op for an attempt that ended in time


# -- connections: guarded, watched, never to this server --------------------------------


class _WatchedConnection:
    """Mixin over the guard's connections: watch the socket, refuse this server."""

    server_port: int | None = None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            _refuse_own_api(sock, self.server_port)
        except BaseException:
            sock.close()
            raise
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.add(sock)
        return sock


def _refuse_own_api(sock: socket.socket, port: int | None) -> None:
    """Refuse a connection that reached this server's port on a local address."""
    if port is None:
        return
    peer, peer_port = sock.getpeername()[:2]
    if peer_port != port:
        return
    address = ipaddress.ip_address(peer.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified or peer == sock.getsockname()[0]:
        raise TargetDenied(f"{peer} port {port} is this server's own API")


_POOLS: dict[tuple[Policy, int | None], dict[str, type]] = {}
_POOLS_LOCK = threading.Lock()


class _Adapter(GuardedAdapter):
    """The guard's adapter with watched connections that refuse this server's own API."""

    def __init__(self, policy: Policy, server_port: int | None) -> None:
        self.server_port = server_port  # read by init_poolmanager, called by __init__
        super().__init__(policy, pool_connections=1, pool_maxsize=1)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        guarded = self.poolmanager.pool_classes_by_scheme
        key = (self.policy, self.server_port)
        with _POOLS_LOCK:
            pools = _POOLS.get(key)
            if pools is None:
                port = self.server_port
                pools = _POOLS[key] = {name: _watched_pool(p, port) for name, p in guarded.items()}
        self.poolmanager.pool_classes_by_scheme = pools


def _watched_pool(pool: type, server_port: int | None) -> type:
    base = pool.ConnectionCls  # type: ignore[attr-defined]
    connection = type(
        f"Watched{base.__name__}", (_WatchedConnection, base), {"server_port": server_port}
    )
    return type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": connection})
