"""waitress's connection and request parser, with our limits on size and on time.

Size: waitress reads a whole body (spooling it to a temporary file past a
few hundred KiB) before the application sees it, so a route's body limit is
enforced here: a declared ``Content-Length`` over it is answered 413 at once
and never read, and a chunked body is cut off as soon as it passes it.

Time: waitress's ``channel_timeout`` restarts at every byte received, so a
client sending one header byte every few seconds holds its connection (a
slot of ``--connection-limit``) for ever. ``--header-timeout`` is a total
deadline instead: the request line and headers must be complete within it,
counted from the connection's accept (its first request) or from the first
byte of a later one; a body must then keep up an average of
:data:`MIN_BODY_RATE` once that much time passed again. While the server is
full (at ``--connection-limit``, new clients waiting), the headers get
:data:`FULL_HEADER_TIMEOUT` at most, so trickling connections make room
within a second. A connection that misses its deadline is closed (with a
408 if part of a request arrived). Between requests, an idle keep-alive
connection is bounded by ``channel_timeout``.

Sending: a task thread sends its answer itself, at once (waitress's
``send_bytes=1``): the head and the first part of the body in one write (one
send, one segment for the client, not two), and while it writes, waitress's loop
does not poll for that output (the socket is writable: the loop would spin on
output it cannot take). What the task could not send, the loop sends.

Waking the loop: waitress wakes its loop (a write to a pipe) at the end of every
request, so that it looks at the connection again. When the loop reads the
connection already and has nothing to send or close, that wake-up is a turn of the
loop for nothing (a write and a read of the pipe, a poll): it is skipped
(:class:`_LoopView`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask
from waitress.utilities import RequestEntityTooLarge

from taskframe.core.errors import ErrorCode

log = logging.getLogger("taskframe.server")

#: Bytes per second a request body must average, after a grace of ``--header-timeout``.
MIN_BODY_RATE = 1024
#: Seconds a connection gets for its headers while the server is at ``--connection-limit``:
#: new clients wait for a slot, and a client that has one sends its headers in milliseconds.
FULL_HEADER_TIMEOUT = 1.0
#: Closed connections are logged summed, at most once per this many seconds.
LOG_EVERY = 60.0


class BodyTooLarge(RequestEntityTooLarge):  # type: ignore[misc]  # waitress: no hints
    """waitress's 413, in the API's error shape."""

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        return (
            f"{self.code} {self.reason}",
            [("Content-Type", "application/json")],
            _error_body(ErrorCode.PAYLOAD_TOO_LARGE, "Request body too large", self.body),
        )


class RefusedByWaitress:
    """Any other error waitress answers before the app sees the request (a malformed
    request 400, headers too large 431, an unknown Transfer-Encoding 501), in the
    API's error shape instead of waitress's text."""

    def __init__(self, error: Any) -> None:
        self.code, self.reason, self.body = error.code, error.reason, error.body

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        title = self.reason[:1] + self.reason[1:].lower()  # "Bad request", as the API writes
        return (
            f"{self.code} {self.reason}",
            [("Content-Type", "application/json")],
            _error_body(ErrorCode.for_status(self.code), title, self.body),
        )


def _error_body(code: ErrorCode, title: str, description: str) -> bytes:
    """The API's error body (server/http/errors.py), for answers made below Falcon."""
    return json.dumps({"code": code.value, "title": title, "description": description}).encode()


class _TimeoutLog:
    """Connections closed for slowness, logged as one line per period (not one each)."""

    def __init__(self) -> None:
        self.count = 0
        self.since: float | None = None  # None: nothing logged yet, the first is at once

    def closed(self, timeout: float) -> None:
        self.count += 1
        now = time.monotonic()
        if self.since is None or now - self.since >= LOG_EVERY:
            log.info(
                "closed %d connection(s) that did not send their request in time "
                "(--header-timeout %gs) since the last such line",
                *(self.count, timeout),
            )
            self.count = 0
            self.since = now


class LimitLogFilter(logging.Filter):
    """waitress logs each time the server reaches ``--connection-limit`` and leaves it.

    Under a flood that is every second or so; this lets one such pair through
    per :data:`LOG_EVERY` and counts the rest into the next one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.since: float | None = None
        self.dropped = 0
        self.reached_logged = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("total open connections reached"):
            now = time.monotonic()
            if self.since is not None and now - self.since < LOG_EVERY:
                self.dropped += 1
                self.reached_logged = False
                return False
            if self.dropped:
                record.msg = f"{message} (and {self.dropped} more times since the last such line)"
            self.since, self.dropped, self.reached_logged = now, 0, True
            return True
        if message.startswith("total open connections dropped below"):
            logged, self.reached_logged = self.reached_logged, False
            return logged
        return True


ANSWERED_AS_JSON = (BodyTooLarge, RefusedByWaitress)


class Task(WSGITask):  # type: ignore[misc]  # waitress: no hints
    """waitress's WSGI task, whose answer's head waits for the first part of its body."""

    channel: Any
    wrote_header: bool

    def write(self, data: bytes) -> None:
        if self.wrote_header:
            super().write(data)
            return
        channel = self.channel
        channel.hold_head = True
        try:
            super().write(data)  # the head (held), then the body (sent with it)
        finally:
            head, channel.head, channel.hold_head = channel.head, None, False
            if head is not None:  # no body came with it
                channel.write_soon(head)


class _LoopView:
    """A channel's server, whose ``pull_trigger`` skips the loop's wake-up when the
    loop has nothing to do for the channel (see :meth:`Channel.loop_needs_waking`).
    Anything else is the server's."""

    __slots__ = (
        "_channel",
        "_server",
        "adj",
        "add_task",
        "application",
        "effective_port",
        "server_name",
    )

    def __init__(self, server: Any, channel: Any) -> None:
        self._server = server
        self._channel = channel
        # Read for every request (waitress's channel.py and task.py), so copied rather
        # than looked up through __getattr__ (~0.5 us each): all are set when the server
        # is made, and never change.
        self.adj = server.adj
        self.add_task = server.add_task
        self.application = server.application
        self.effective_port = server.effective_port
        self.server_name = server.server_name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def pull_trigger(self) -> None:
        if self._channel.loop_needs_waking():
            self._server.pull_trigger()


def channel_class(body_limit: Any, header_timeout: float) -> type[HTTPChannel]:
    """A waitress channel class; ``body_limit(path)`` gives a route's largest body.

    ``header_timeout`` 0 turns the deadline off (waitress's own behaviour).
    """
    timeouts = _TimeoutLog()

    class Parser(HTTPRequestParser):  # type: ignore[misc]
        limit = 0
        # waitress's attributes (it has no type hints).
        error: Any
        completed: bool

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            self.limit = body_limit(self.path or "")
            if self.content_length > self.limit:  # type: ignore[has-type]  # set by waitress
                self._too_large()
                self.content_length = 0  # the body is not read (nor spooled)

        def received(self, data: bytes) -> int:
            consumed = super().received(data)
            receiver = self.body_rcv
            if self.chunked and not self.completed and receiver is not None:
                if len(receiver) > self.limit:  # the body decoded so far
                    self._too_large()
                    return len(data)  # the rest of what arrived is not a request
            if self.error is not None and not isinstance(self.error, ANSWERED_AS_JSON):
                self.error = RefusedByWaitress(self.error)
            return int(consumed)

        def _too_large(self) -> None:
            self.error = BodyTooLarge(f"the body is larger than {self.limit} bytes")
            self.completed = True
            self.connection_close = True

    class Channel(HTTPChannel):  # type: ignore[misc]
        parser_class = Parser
        task_class = Task
        # waitress's attributes (it has no type hints).
        request: Any
        requests: list[Any]
        will_close: bool
        close_when_flushed: bool
        #: When the clock of the current request's headers started (None: not in headers).
        header_started: float | None = None
        #: When the current request's headers were complete (None: not in a body).
        body_started: float | None = None
        #: A body was refused 413: what follows on this connection is not read.
        body_refused = False
        #: The task's next write is a response head, kept (``head``) to go with its body.
        hold_head = False
        head: bytes | None = None
        #: A task thread is sending (waitress's attributes have no type hints).
        task_writing = False
        #: The loop's latest look found the connection readable (see loop_needs_waking).
        loop_reading = False
        server: Any
        adj: Any
        total_outbufs_len: int
        connected: bool

        def write_soon(self, data: Any) -> int:
            if self.hold_head:
                self.hold_head, self.head = False, data
                return len(data)
            if self.head is not None and type(data) is bytes:
                data, self.head = self.head + data, None
            self.task_writing = True
            try:
                return int(super().write_soon(data))
            finally:
                self.task_writing = False
                if self.total_outbufs_len and self.connected:
                    self.server.pull_trigger()  # what the task could not send: the loop does

        def writable(self) -> bool:
            # Past the high watermark the task waits for the loop to send: then it must poll.
            if self.task_writing and self.total_outbufs_len <= self.adj.outbuf_high_watermark:
                return False
            return bool(super().writable())

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.server = _LoopView(self.server, self)
            if header_timeout:  # the first request is due from the accept on
                self.header_started = time.monotonic()

        def loop_needs_waking(self) -> bool:
            """Whether a task thread must wake the loop for this connection: unless the
            loop reads it already and has nothing to send, close or time out.

            readable() clears loop_reading before it looks and sets it after: a look
            that began before the task's last change (and may have seen the connection
            unreadable) leaves it False by the time the task reads it here.
            """
            return not (
                self.loop_reading
                and self.connected
                and self.request is None  # no half-received request (its clock runs)
                and not (self.total_outbufs_len or self.will_close or self.close_when_flushed)
            )

        def received(self, data: bytes) -> bool:
            if not header_timeout:
                return self._refused_if_too_large(super().received(data))
            if self.request is None and self.header_started is None:
                self.header_started = time.monotonic()
            result = self._refused_if_too_large(super().received(data))
            request = self.request
            if request is None:  # nothing half-received: idle, or a request is served
                self.header_started = self.body_started = None
            elif request.headers_finished and self.body_started is None:
                self.header_started = None
                self.body_started = time.monotonic()
            return bool(result)

        def _refused_if_too_large(self, result: Any) -> bool:
            # The rest of a refused body would be read as requests (waitress reads on
            # while one runs): stop reading; the 413 is sent and the connection closed.
            if any(isinstance(r.error, BodyTooLarge) for r in self.requests[-2:]):
                self.body_refused = True
            return bool(result)

        def readable(self) -> bool:
            # Called for every connection on each turn of waitress's loop (at least once a second).
            self.loop_reading = False  # first: see loop_needs_waking
            reading = self.loop_reading = self._readable()
            return reading

        def _readable(self) -> bool:
            if self.body_refused:
                return False
            waiting = self.header_started is not None or self.body_started is not None
            if waiting and not (self.will_close or self.close_when_flushed):
                now = time.monotonic()
                if self.requests:  # a request is served: the clock runs only while we read
                    if self.header_started is not None:
                        self.header_started = now
                    if self.body_started is not None:
                        self.body_started = now
                elif self._late(now):
                    self._time_out()
                    return False
            return bool(super().readable())

        def _late(self, now: float) -> bool:
            if self.header_started is not None:
                allowed = header_timeout
                if self.server.in_connection_overflow:  # others wait for a slot
                    allowed = min(allowed, FULL_HEADER_TIMEOUT)
                return now - self.header_started > allowed
            request = self.request
            if self.body_started is None or request is None:
                return False
            late = now - self.body_started - header_timeout
            return late > 0 and request.body_bytes_received < late * MIN_BODY_RATE

        def _time_out(self) -> None:
            request = self.request
            if request is None:  # not a byte of a request: close without a word
                self.will_close = True
            else:
                body = _error_body(
                    ErrorCode.REQUEST_TIMEOUT,
                    "Request timeout",
                    f"the request was not received in time: --header-timeout is "
                    f"{header_timeout:g} s ({FULL_HEADER_TIMEOUT:g} s while the server is full) "
                    f"for the headers, then a body must average {MIN_BODY_RATE} bytes/s",
                )
                head = (
                    "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                with self.outbuf_lock:
                    self.outbufs[-1].append(head + body)
                    self.total_outbufs_len += len(head) + len(body)
                    self.current_outbuf_count += len(head) + len(body)
                self.close_when_flushed = True
                request.close()
                self.request = None
            self.header_started = self.body_started = None
            timeouts.closed(header_timeout)

    return Channel
