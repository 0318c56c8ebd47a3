"""HTTP/1.1 as the client and the worker speak it: a request's head, an answer's head and body.

:mod:`http.client` parses an answer's headers with :mod:`email`'s parser,
which cost ``Client.submit`` about 100 µs of CPU per call, more than a third
of the client's share of a round trip. The server's answers need little of
HTTP: a status line, headers, then a body framed by ``Content-Length``,
chunks or the connection's end. The blocking transport reads them with
:class:`SocketReader`; the worker's event loop (:mod:`taskframe.worker.streams`)
reads them from an asyncio stream; both share the parsing here.
"""

from __future__ import annotations

import re
import socket

#: The longest status or header line taken from a server.
LINE_LIMIT = 64 << 10
#: How a body ends when it has no length: chunked, or when the server closes.
CHUNKED, TO_CLOSE = -1, -2
_RECV = 64 << 10
# What http.client refuses too: a target with spaces or controls, a value that
# would start a header of its own.
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"\r|\n(?![ \t])")


class BadAnswer(Exception):
    """What came back is not an HTTP/1.x answer."""


class Answer:
    """A status, its headers (lower-cased names) and whether the connection stays open."""

    __slots__ = ("status", "headers", "keep_alive")

    def __init__(self, status: int, headers: dict[str, str], keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request_head(
    method: str, target: str, host: str, headers: dict[str, str], length: int | None
) -> bytes:
    """The request line and headers; ``length`` is the body's (None: no body).

    ValueError for a target or header that would not be one (a space, a line
    break): such a request is never sent.
    """
    if _BAD_TARGET.search(target):
        raise ValueError(f"the request target {target!r} holds a space or a control character")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if _BAD_VALUE.search(value) or _BAD_VALUE.search(name):
            raise ValueError(f"the header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status_of(line: bytes) -> tuple[bytes, int]:
    """The version and status of a status line."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP answer: {line[:80]!r}")
    return parts[0], int(parts[1])


def add_header(headers: dict[str, str], line: bytes) -> None:
    name, _, value = line.decode("latin-1").partition(":")
    headers[name.strip().lower()] = value.strip()


def end_of_head(line: bytes) -> bool:
    return line in (b"\r\n", b"\n", b"")


def framing(
    version: bytes, status: int, headers: dict[str, str], head_only: bool
) -> tuple[Answer, int]:
    """The answer, and its body's length: a count of bytes, :data:`CHUNKED` or :data:`TO_CLOSE`."""
    keep_alive = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if head_only or status in (204, 304) or status < 200:
        length = 0
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        length = CHUNKED
    elif (declared := headers.get("content-length")) is not None:
        if not declared.isdigit():
            raise BadAnswer(f"Content-Length {declared!r}")
        length = int(declared)
    else:  # the body ends with the connection
        length, keep_alive = TO_CLOSE, False
    return Answer(status, headers, keep_alive), length


def chunk_size(line: bytes) -> int:
    size_line = line.split(b";", 1)[0].strip()
    try:
        return int(size_line, 16)
    except ValueError:
        raise BadAnswer(f"chunk size {size_line[:20]!r}") from None


class SocketReader:
    """Buffered reading of a blocking socket's answers (timeouts are the socket's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(_RECV)
        self.buffer += data
        return bool(data)

    def readline(self) -> bytes:
        """A line with its end; b"" at the connection's end."""
        buffer = self.buffer
        start = 0
        while (end := buffer.find(b"\n", start)) < 0:
            if len(buffer) > LINE_LIMIT:
                raise BadAnswer("a status or header line over 64 KiB")
            start = len(buffer)
            if not self._fill():
                line = bytes(buffer)
                buffer.clear()
                return line
        line = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        return line

    def readexactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ConnectionResetError("the server closed the connection mid-answer")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def answer(self, head_only: bool) -> tuple[Answer, bytes]:
        """One whole answer."""
        line = self.readline()
        if not line:
            raise ConnectionResetError("the server closed the connection without answering")
        version, status = status_of(line)
        headers: dict[str, str] = {}
        while not end_of_head(line := self.readline()):
            add_header(headers, line)
        answer, length = framing(version, status, headers, head_only)
        if length >= 0:
            return answer, self.readexactly(length)
        if length == TO_CLOSE:
            return answer, self.read_to_close()
        chunks = []
        while size := chunk_size(self.readline()):
            chunks.append(self.readexactly(size))
            self.readexactly(2)  # CRLF
        while not end_of_head(self.readline()):
            pass  # trailers
        return answer, b"".join(chunks)
