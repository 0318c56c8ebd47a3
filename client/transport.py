"""HTTP transport shared by the Python client and the worker.

One or more server URLs, round robin per request, failing over at once; one
keep-alive connection per thread and URL; a bearer token on every request
and a private CA for https; the ``*_proxy`` environment variables. Errors
become the classes of :mod:`taskframe.client.errors`.

Not ``requests``: this is the hot path of ``Client.submit`` and of the
worker. :mod:`http.client` opens the connections (TLS, proxy tunnels), and
:mod:`taskframe.client.http11` writes the requests and reads the answers,
at a fraction of either's CPU per call.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit
from urllib.request import (  # type: ignore[attr-defined]  # the second: not in typeshed
    getproxies_environment,
    proxy_bypass_environment,
)

from taskframe.client import http11
from taskframe.client.errors import TaskframeError, Unavailable, error_class
from taskframe.core import json_codec
from taskframe.core.retry import BackoffPolicy

log = logging.getLogger("taskframe.client")

#: How long a URL that just failed is skipped (grows while it keeps failing).
URL_PENALTY = BackoffPolicy(base=0.5, cap=30.0)
#: Failures of the network, TLS or the HTTP exchange: the next URL may do better.
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException, http11.BadAnswer)


@dataclass(frozen=True)
class _Route:
    """Where the requests for one server URL go."""

    https: bool
    host: str
    port: int
    netloc: str  # host[:port] as written in the URL
    prefix: str  # the URL's own path, e.g. "/taskframe" behind nginx; "" for none
    proxy: tuple[str, int] | None = None  # an http:// proxy from the environment
    proxy_auth: str | None = None  # its Proxy-Authorization header value

    def target(self, path: str) -> str:
        """The request target: a plain-http proxy wants the absolute URI."""
        if self.proxy is not None and not self.https:
            return f"http://{self.netloc}{self.prefix}{path}"
        return self.prefix + path


class _HTTPConnection(http.client.HTTPConnection):
    """http.client opens the connection (TLS, a proxy's tunnel); requests and answers
    go through :mod:`~taskframe.client.http11` on its socket."""

    reader: http11.SocketReader | None = None

    def connect(self) -> None:
        super().connect()
        self.reader = http11.SocketReader(self.sock)

    def close(self) -> None:
        self.reader = None
        super().close()


class _HTTPSConnection(_HTTPConnection, http.client.HTTPSConnection):
    """The same over TLS."""


class CertificateFileError(ValueError):
    """The CA bundle given (``ca_cert``) cannot be loaded."""


class _Failure(Exception):
    """The exchange with one URL failed on the way (no usable answer); ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transport:
    """Talks to one or more server URLs, round robin per request, failing over at once.

    A URL that just failed is skipped for a short, growing while (unless every
    URL is failing), so a dead host does not cost a connect attempt on every
    other request. Each thread keeps one keep-alive connection per URL.

    ``token`` is sent as ``Authorization: Bearer <token>``; ``ca_cert`` is the
    path of a CA bundle that https servers are verified against (instead of
    the system's). The proxy variables (``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``) are read when the transport is made; only
    http:// proxies are supported (https goes through them with CONNECT).
    A URL or proxy that cannot be used raises ValueError here.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        penalty: BackoffPolicy = URL_PENALTY,
        token: str | None = None,
        ca_cert: str | None = None,
        user_agent: str = "taskframe-client",
        logger: logging.Logger = log,
    ) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        proxies = getproxies_environment()
        self._routes = [_route(url, proxies) for url in self.urls]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.token = token
        self.user_agent = user_agent
        # Loading the system's CA store takes milliseconds: only when there is an https URL.
        https = any(route.https for route in self._routes)
        self._tls = _tls_context(ca_cert) if https else None
        self._log = logger
        self._penalty = penalty
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._failures = [0] * len(self.urls)
        self._down_until = [0.0] * len(self.urls)
        self._local = threading.local()
        self._connections: list[_HTTPConnection] = []
        self._interrupts = 0  # interrupt() calls so far

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request, trying each URL once; return the JSON answer (None for 204).

        Raises :class:`Unavailable` when no URL answered usefully and another
        :class:`TaskframeError` when a server refused the request with a 4xx,
        answered a redirect (not followed), or the request cannot be sent at
        all (e.g. a body with NaN).
        """
        payload = self._payload(method, path, body)
        request_headers = self._headers(body is not None, headers)
        target = _with_query(path, params)
        timeout = read_timeout or self.read_timeout
        last: Unavailable | None = None
        interrupts = self._interrupts
        for index in self._order():
            url = self.urls[index] + path
            try:
                response, data = self._exchange(
                    index, method, target, payload, request_headers, timeout
                )
            except _Failure as failure:
                last = self._unreachable(index, url, failure, interrupts)
                continue
            except ValueError as exc:  # e.g. a header not latin-1, a space in the path
                raise _unsendable(url, exc) from exc
            try:
                return self._judge(index, response, data, url)
            except Unavailable as exc:  # another URL may serve
                last = exc
        assert last is not None
        raise last

    def _unreachable(self, index: int, url: str, failure: _Failure, interrupts: int) -> Unavailable:
        """The error of a URL whose exchange failed, the URL marked failing; raised at
        once instead when ``interrupt()`` ended the exchange (``interrupts``: its count
        when the call began): neither the URL's fault nor a reason to try the others."""
        error = Unavailable(f"{url}: {failure.reason}", url=url, description=failure.reason)
        if self._interrupts != interrupts:
            raise error from None
        self._mark(index, ok=False, reason=error)
        return error

    def _order(self) -> list[int]:
        """URL indexes for one request: rotated per request, healthy ones first."""
        with self._lock:
            start = next(self._counter) % len(self.urls)
            now = time.monotonic()
            rotated = [(start + i) % len(self.urls) for i in range(len(self.urls))]
            healthy = [i for i in rotated if self._down_until[i] <= now]
            resting = [i for i in rotated if self._down_until[i] > now]
        # Resting URLs are tried last, only when every healthy one failed too.
        return healthy + resting

    def _judge(self, index: int, response: Any, data: bytes, url: str) -> Any:
        """An answer's JSON (None without a body), its URL marked healthy or not.

        Raises the answer's error; an :class:`Unavailable` means another URL may serve.
        ``response`` has what ``_error`` reads: ``status`` and ``getheader``.
        """
        status = response.status
        if status >= 300:
            error = _error(response, data, url)
            unavailable = isinstance(error, Unavailable)
            self._mark(index, ok=not unavailable, reason=error)
            raise error
        self._mark(index, ok=True)
        if status == 204 or not data:
            return None
        try:
            return json_codec.loads(data)
        except ValueError:
            not_json = f"{url}: HTTP {status} with a body that is not JSON"
            raise Unavailable(not_json, status) from None

    def _mark(self, index: int, *, ok: bool, reason: object = None) -> None:
        with self._lock:
            failures = self._failures[index]
            if ok:
                self._failures[index] = 0
                self._down_until[index] = 0.0
            else:
                self._failures[index] += 1
                pause = self._penalty.nominal(failures + 1)
                self._down_until[index] = time.monotonic() + pause
        url = self.urls[index]
        if len(self.urls) > 1 and (failures == 0) != ok:  # one line per URL failure streak
            if ok:
                self._log.info("server %s answers again", url)
            else:
                self._log.warning("server %s failed, using the others meanwhile: %s", url, reason)

    @staticmethod
    def _payload(method: str, path: str, body: Any) -> bytes | None:
        if body is None:
            # An empty body still says Content-Length: 0 (as requests did for all but GET/HEAD).
            return None if method in ("GET", "HEAD") else b""
        try:
            return json_codec.dumps(body)
        except ValueError as exc:  # NaN or infinity: not JSON; nothing was sent
            raise TaskframeError(f"{method} {path}: the body is not valid JSON: {exc}") from exc

    def _headers(self, has_body: bool, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if has_body:
            headers["Content-Type"] = "application/json"
        if extra:
            headers.update(extra)
        return headers

    def _exchange(
        self,
        index: int,
        method: str,
        target: str,
        payload: bytes | None,
        headers: dict[str, str],
        read_timeout: float,
    ) -> tuple[http11.Answer, bytes]:
        """One request and its whole answer on this thread's connection to URL ``index``.

        Never resent: once bytes went out, the server may have acted on them.
        Any failure closes the connection, so that the next call opens a new one.
        """
        route = self._routes[index]
        if route.proxy_auth and not route.https:
            headers = {**headers, "Proxy-Authorization": route.proxy_auth}
        length = None if payload is None else len(payload)
        head = http11.request_head(method, route.target(target), route.netloc, headers, length)
        connection = self._connection(index)
        waited = f"connecting, {self.connect_timeout:g} s"
        try:
            reader = connection.reader
            if reader is None or reader.buffer or _readable(reader.sock):
                # New, closed after "Connection: close", or closed by the server while
                # idle (a readable idle socket holds an EOF or bytes nobody asked for).
                connection.close()
                connection.timeout = self.connect_timeout
                connection.connect()
                reader = connection.reader
                assert reader is not None
            waited = f"waiting for the answer, {read_timeout:g} s"
            reader.sock.settimeout(read_timeout)
            try:
                reader.sock.sendall(head + payload if payload else head)  # one segment
            except ConnectionError:
                # The server may have answered before reading the whole body (a 413
                # from Content-Length) and closed: its answer may be here to read.
                # If not, reading fails too and that failure is reported.
                pass
            answer, data = reader.answer(method == "HEAD")
            if not answer.keep_alive:
                connection.close()
            return answer, data
        except _TRANSPORT_ERRORS as exc:
            connection.close()
            raise _Failure(_reason(exc, waited)) from exc
        except BaseException:
            connection.close()  # half a request may be on it
            raise

    def _connection(self, index: int) -> _HTTPConnection:
        """This thread's connection to URL ``index`` (not connected yet when new)."""
        connections: dict[int, _HTTPConnection] | None
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        connection = connections.get(index)
        if connection is None:
            connection = connections[index] = self._new_connection(self._routes[index])
            with self._lock:
                self._connections.append(connection)
        return connection

    def _new_connection(self, route: _Route) -> _HTTPConnection:
        host, port = route.proxy or (route.host, route.port)
        if not route.https:
            return _HTTPConnection(host, port, timeout=self.connect_timeout)
        connection = _HTTPSConnection(host, port, timeout=self.connect_timeout, context=self._tls)
        if route.proxy is not None:
            tunnel_headers = {"Proxy-Authorization": route.proxy_auth} if route.proxy_auth else None
            connection.set_tunnel(route.host, route.port, headers=tunnel_headers)
        return connection

    def interrupt(self) -> None:
        """From another thread: end the requests in flight now (a worker abandoning its
        long poll). They raise :class:`Unavailable` without trying the other URLs."""
        with self._lock:
            self._interrupts += 1
            connections = list(self._connections)
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
                except OSError:
                    pass

    def close(self) -> None:
        """Close every thread's keep-alive connections (a later call opens new ones)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()  # so that threads register their new ones
        for connection in connections:
            connection.close()


def _unsendable(url: str, exc: ValueError) -> TaskframeError:
    """The error of a request that cannot be written (a header not latin-1, say)."""
    return TaskframeError(f"{url}: {type(exc).__name__}: {exc}", url=url)


def read_token_file(path: str) -> str:
    """The token held in ``path`` (surrounding whitespace removed); ValueError if unusable."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty")
    if any(c.isspace() for c in token):
        raise ValueError(f"the token file {path} holds more than one word")
    return token


def _route(url: str, proxies: dict[str, str]) -> _Route:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a server URL has no user, query or fragment")
    https = parts.scheme == "https"
    route = _Route(https, parts.hostname, port or (443 if https else 80), parts.netloc, parts.path)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass_environment(parts.netloc, proxies):
        return route
    address, auth = _proxy(proxy)
    return replace(route, proxy=address, proxy_auth=auth)


def _proxy(proxy: str) -> tuple[tuple[str, int], str | None]:
    """The address and the Proxy-Authorization of a proxy URL (``host:port`` means http://)."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"proxy {proxy!r}: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"proxy {proxy!r}: only http:// proxies are supported")
    auth = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    return (parts.hostname, port or 80), auth


def _tls_context(ca_cert: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_cert)
    except OSError as exc:  # ssl.SSLError too: not a PEM bundle
        raise CertificateFileError(f"cannot load the CA certificates in {ca_cert}: {exc}") from None


def _with_query(path: str, params: dict[str, Any] | None) -> str:
    """``path?a=1&b=2``, encoded as requests did: None values left out, a list repeats its key."""
    pairs = [
        (key, value)
        for key, values in (params or {}).items()
        for value in (values if isinstance(values, list | tuple) else [values])
        if value is not None
    ]
    if not pairs:
        return path
    return f"{path}{'&' if '?' in path else '?'}{urlencode(pairs)}"


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read right now (poll: no limit on fd numbers)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _reason(exc: BaseException, waited: str) -> str:
    """A short reason for a transport error; ``waited`` names the step and its timeout."""
    if isinstance(exc, ssl.SSLError):  # ssl.CertificateError is one
        return f"TLS error: {exc}"
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return f"timed out ({waited})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host" if exc.errno == socket.EAI_NONAME else f"DNS error: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def _error(response: http11.Answer, data: bytes, url: str) -> TaskframeError:
    """The error for a 3xx/4xx/5xx answer, carrying the server's title, description, errors."""
    status = response.status
    title = description = code = None
    errors: dict[str, Any] | None = None
    try:
        body = json_codec.loads(data)
    except ValueError:
        body = None
    if 300 <= status < 400:  # not followed: a POST must not turn into a GET elsewhere
        summary = f"redirected to {response.getheader('Location')}: use that URL"
    elif isinstance(body, dict) and "title" in body:
        title = str(body["title"])
        code = body.get("code") if isinstance(body.get("code"), str) else None
        description = body.get("description")
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else None
        detail = description or errors or ""
        summary = f"{title}: {detail}" if detail else title
    else:
        summary = data.decode("utf-8", "replace")[:200] if body is None else str(body)[:200]
    return error_class(status, code)(
        f"{url}: HTTP {status} {summary}",
        status,
        url,
        title=title,
        description=description,
        errors=errors,
        code=code,
    )
