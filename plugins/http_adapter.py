"""The requests adapter of :mod:`taskframe.plugins.http_guard`: connections that resolve a
host, check each address against a :class:`~taskframe.plugins.http_guard.Policy`
and connect only to one that passed. Apart so that the rules load without requests
and urllib3."""

from __future__ import annotations

import functools
import socket
import sys
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from taskframe.plugins.http_guard import Policy, TargetDenied, _literal, normalise_host


class _GuardedConnection:
    """Mixin for urllib3 connections: resolve, check, and connect to a checked address."""

    policy: Policy
    _dns_host: str
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        host = normalise_host(self._dns_host)
        trusted = self.policy.check_name(host)
        literal = _literal(host)
        reason = (
            None
            if trusted or literal is None
            else self.policy.refusal(host, str(literal), self.port)
        )
        if reason:  # judged before any lookup, even where the address family is unsupported
            raise TargetDenied(reason)
        try:
            infos = socket.getaddrinfo(host, self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        except UnicodeError as exc:
            raise TargetDenied(f"host {host!r} cannot be resolved: {exc}") from exc
        refused: list[str] = []
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            reason = None if trusted else self.policy.refusal(host, str(sockaddr[0]), self.port)
            if reason:
                refused.append(reason)
                continue
            try:
                sock = self._connect(family, kind, proto, sockaddr)
            except OSError as exc:
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if error is None:
            raise TargetDenied("; ".join(dict.fromkeys(refused)) or f"{host!r}: no address")
        if isinstance(error, TimeoutError):
            message = f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            raise ConnectTimeoutError(self, message) from error
        message = f"Failed to establish a new connection: {error}"
        raise NewConnectionError(self, message) from error  # type: ignore[arg-type]

    def _connect(self, family: int, kind: int, proto: int, sockaddr: Any) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        try:
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            if self.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(self.timeout)
            if self.source_address:
                sock.bind(self.source_address)
            sock.connect(sockaddr)
            return sock
        except BaseException:
            sock.close()
            raise


@functools.lru_cache(maxsize=32)
def _pool_classes(policy: Policy) -> dict[str, type]:
    """HTTP and HTTPS pool classes whose connections enforce ``policy``."""
    http_conn = type("GuardedHTTPConnection", (_GuardedConnection, HTTPConnection), {})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnection, HTTPSConnection), {})
    http_conn.policy = https_conn.policy = policy  # type: ignore[attr-defined]
    return {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose direct connections obey ``policy``.

    Connections through a proxy (``--http-proxy``) go to the proxy, which the
    operator chose; the caller checks their targets with
    :meth:`Policy.check_resolved`.
    """

    def __init__(self, policy: Policy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.policy)
