"""The worker's own exchanges with the server on its event loop, over asyncio streams.

A lease request, a heartbeat or an outcome used to go through a thread
running ``http.client``: a hand-off to the thread and one back to the loop
per exchange, each a wake-up of another thread and a turn on the GIL (about
200 µs of CPU per exchange with the request itself, against 60–90 µs here).
:class:`StreamTransport` keeps :class:`~taskframe.client.transport.Transport`'s
rules — URL rotation and failover with penalties, the bearer token, the CA
bundle, one keep-alive connection per channel and URL, never resending a
request once bytes went out, ``interrupt()`` — and speaks HTTP/1.1 itself,
as much of it as the server's answers need (``Content-Length`` or chunked
bodies, ``Connection: close``).

Routes through a proxy (the ``*_proxy`` variables) are not handled here:
:attr:`StreamTransport.streams_ok` is then False and the worker keeps its
exchanges on a thread with the blocking transport.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from taskframe.client import http11
from taskframe.client.errors import Unavailable
from taskframe.client.http11 import Answer, BadAnswer
from taskframe.client.transport import Transport, _Failure, _reason, _Route, _unsendable

#: Channels that never share a connection: a lease request in flight must hold up
#: neither a heartbeat nor the outcomes reported beside a long poll.
LEASE, BEATS, REPORTS = "lease", "beats", "reports"


class _Stream:
    """One keep-alive connection: a request at a time, its whole answer read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.timed_out = False

    def time_out(self) -> None:
        """Closed by its timer: the exchange on it fails, as timed out."""
        self.timed_out = True
        self.close()

    @classmethod
    async def open(cls, route: _Route, tls: ssl.SSLContext | None) -> _Stream:
        reader, writer = await asyncio.open_connection(
            route.host,
            route.port,
            ssl=tls if route.https else None,
            server_hostname=route.host if route.https else None,
            limit=http11.LINE_LIMIT,
        )
        return cls(reader, writer)

    def stale(self) -> bool:
        """Closed by the server while idle (or holding bytes nobody asked for)."""
        return self.reader.at_eof() or bool(self.reader._buffer) or self.writer.is_closing()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.writer.close()

    async def exchange(
        self, head: bytes, payload: bytes | None, head_only: bool
    ) -> tuple[Answer, bytes]:
        writer = self.writer
        writer.write(head + payload if payload else head)
        await writer.drain()
        return await self._answer(head_only)

    async def _answer(self, head_only: bool) -> tuple[Answer, bytes]:
        reader = self.reader
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("the server closed the connection without answering")
        version, status = http11.status_of(line)
        headers: dict[str, str] = {}
        while not http11.end_of_head(line := await reader.readline()):
            http11.add_header(headers, line)
        answer, length = http11.framing(version, status, headers, head_only)
        if length >= 0:
            return answer, await reader.readexactly(length)
        if length == http11.TO_CLOSE:
            return answer, await reader.read()
        chunks = []
        while size := http11.chunk_size(await reader.readline()):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)  # CRLF
        while not http11.end_of_head(await reader.readline()):
            pass  # trailers
        return answer, b"".join(chunks)


class StreamTransport(Transport):
    """:class:`Transport`, plus :meth:`acall` for coroutines on one event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Whether :meth:`acall` can serve every URL (no proxy on the way).
        self.streams_ok = all(route.proxy is None for route in self._routes)
        self._idle: dict[tuple[str, int], _Stream] = {}  # by (channel, URL index)
        self._busy: set[_Stream] = set()

    async def acall(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        read_timeout: float | None = None,
        channel: str = LEASE,
    ) -> Any:
        """:meth:`Transport.call` on the loop: the same answers and errors."""
        payload = self._payload(method, path, body)
        headers = self._headers(body is not None, None)
        timeout = read_timeout or self.read_timeout
        last: Unavailable | None = None
        interrupts = self._interrupts
        # The same handling of each URL's answer as Transport.call.
        for index in self._order():
            url = self.urls[index] + path
            try:
                answer, data = await self._aexchange(
                    index, channel, method, path, payload, headers, timeout
                )
            except _Failure as failure:
                last = self._unreachable(index, url, failure, interrupts)
                continue
            except ValueError as exc:  # e.g. a header not latin-1
                raise _unsendable(url, exc) from exc
            try:
                return self._judge(index, answer, data, url)
            except Unavailable as exc:  # another URL may serve
                last = exc
        assert last is not None
        raise last

    async def _aexchange(
        self,
        index: int,
        channel: str,
        method: str,
        path: str,
        payload: bytes | None,
        headers: dict[str, str],
        read_timeout: float,
    ) -> tuple[Answer, bytes]:
        """One request and its whole answer on the channel's connection to URL ``index``."""
        route = self._routes[index]
        length = None if payload is None else len(payload)
        head = http11.request_head(method, route.target(path), route.netloc, headers, length)
        stream = self._idle.pop((channel, index), None)
        waited = f"connecting, {self.connect_timeout:g} s"
        try:
            if stream is None or stream.stale():
                if stream is not None:
                    stream.close()
                stream = None
                opening = _Stream.open(route, self._tls)
                stream = await asyncio.wait_for(opening, self.connect_timeout)
            waited = f"waiting for the answer, {read_timeout:g} s"
            self._busy.add(stream)
            # A timer that closes the connection rather than wait_for, which makes a
            # task per call.
            timer = asyncio.get_running_loop().call_later(read_timeout, stream.time_out)
            try:
                answer, data = await stream.exchange(head, payload, method == "HEAD")
            finally:
                timer.cancel()
            if stream.timed_out:  # it may have ended well just as the timer closed it
                raise asyncio.TimeoutError
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            _close(stream)
            raise _Failure(f"timed out ({waited})") from None
        except (OSError, EOFError, BadAnswer) as exc:  # IncompleteReadError is an EOFError
            _close(stream)
            if stream is not None and stream.timed_out:
                raise _Failure(f"timed out ({waited})") from None
            raise _Failure(_reason(exc, waited)) from exc
        except BaseException:  # cancelled: half a request may be on it
            _close(stream)
            raise
        finally:
            if stream is not None:
                self._busy.discard(stream)
        if answer.keep_alive:
            self._idle[(channel, index)] = stream
        else:
            stream.close()
        return answer, data

    def interrupt(self) -> None:
        """End the exchanges in flight, the loop's too (call it on the loop then)."""
        super().interrupt()
        for stream in list(self._busy):
            stream.close()

    def close(self) -> None:
        """Close every connection; the loop's need their loop still running."""
        super().close()
        idle, self._idle = self._idle, {}
        for stream in [*idle.values(), *self._busy]:
            try:
                stream.close()
            except RuntimeError:  # its loop is closed: so is the connection, by now
                pass


def _close(stream: _Stream | None) -> None:
    if stream is not None:
        stream.close()
