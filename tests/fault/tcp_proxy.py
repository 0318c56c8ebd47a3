"""A small controllable TCP proxy for network fault tests.

``TcpProxy(port).start()`` listens on a free local port and forwards every
connection to ``127.0.0.1:port``. The test switches its :attr:`mode` at any
time:

- ``PASS``: bytes flow both ways.
- ``RESET``: every open connection is reset (RST on both sides) and every new
  one is accepted and reset at once, as when a peer or a middlebox drops state.
- ``BLACKHOLE``: connections are accepted (and kept) but no byte moves in
  either direction, as when packets are silently dropped. Going back to
  ``PASS`` lets the held bytes through, like a healed partition: a request
  sent during the blackhole arrives late rather than never.

A fault may target only the connections whose first HTTP request goes to
given paths (``set_mode(BLACKHOLE, paths=("/lease",))``): a worker keeps one
keep-alive connection per thread, and each of its threads calls one endpoint,
so this stalls, say, the worker's lease loop while its heartbeats still pass.

One thread per connection; nothing here is fast, and nothing needs to be.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

PASS = "pass"
RESET = "reset"
BLACKHOLE = "blackhole"
MODES = (PASS, RESET, BLACKHOLE)

_TICK = 0.02  # how often a connection thread looks at the mode


def _request_path(data: bytes) -> str:
    """The path of an HTTP request line (``POST /lease HTTP/1.1``), else ``""``."""
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) == 3 else ""


class _Connection:
    """One proxied connection: its two sockets, its route, bytes held back."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.route: str | None = None  # the path of its first request, once seen
        self.held = b""  # client bytes read while deciding, not forwarded yet


def _reset(sock: socket.socket | None) -> None:
    """Close ``sock`` with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    """Forward ``listen_host:port`` to ``target_host:target_port``, with injectable faults."""

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", listen_host: str = "127.0.0.1"
    ) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, 0))
        self._listener.listen(128)
        self._listener.settimeout(_TICK * 5)
        self.host, self.port = self._listener.getsockname()[:2]
        self._mode = PASS
        self._paths: tuple[str, ...] | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        #: Counters, for tests that want to be sure a fault actually hit something.
        self.accepted = 0
        self.resets = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str, paths: tuple[str, ...] | None = None) -> None:
        """Switch to ``mode``, for every connection or only those to ``paths`` (prefixes)."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; one of {MODES}")
        self._paths = None if paths is None else tuple(paths)
        self._mode = mode

    def start(self) -> TcpProxy:
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def stop(self) -> None:
        self._stopped.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            with self._lock:
                self.accepted += 1
            self._spawn(self._serve, "proxy-conn", client)

    def _count_reset(self) -> None:
        with self._lock:
            self.resets += 1

    def _mode_for(self, conn: _Connection) -> str:
        mode, paths = self._mode, self._paths
        if mode == PASS or paths is None:
            return mode
        if conn.route is None:
            return PASS  # its first bytes tell its route; they are held until then
        return mode if conn.route.startswith(paths) else PASS

    def _serve(self, client: socket.socket) -> None:
        conn = _Connection(client)
        try:
            while not self._stopped.is_set():
                mode = self._mode_for(conn)
                if mode == RESET:
                    self._count_reset()
                    _reset(conn.client)
                    _reset(conn.upstream)
                    return
                if mode == BLACKHOLE:
                    time.sleep(_TICK)  # hold everything: the kernel buffers what was sent
                    continue
                if conn.upstream is None:
                    try:
                        conn.upstream = socket.create_connection(self.target, timeout=3)
                    except OSError:
                        _reset(conn.client)  # the target is down: the client sees a reset
                        return
                    conn.upstream.settimeout(None)
                if conn.held:
                    try:
                        conn.upstream.sendall(conn.held)
                    except OSError:
                        return
                    conn.held = b""
                if not self._pump(conn):
                    return
        finally:
            for sock in (conn.client, conn.upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass

    def _pump(self, conn: _Connection) -> bool:
        """Move what is ready; False once either side closed."""
        client, upstream = conn.client, conn.upstream
        assert upstream is not None
        try:
            readable, _, _ = select.select([client, upstream], [], [], _TICK)
        except (OSError, ValueError):
            return False
        for source in readable:
            if self._mode_for(conn) != PASS:
                return True  # re-check the mode before moving anything
            sink = upstream if source is client else client
            try:
                data = source.recv(65536)
                if not data:
                    return False
                if source is client and conn.route is None:
                    conn.route = _request_path(data)
                    if self._mode_for(conn) != PASS:
                        conn.held = data  # a targeted route: hold its first request
                        return True
                sink.sendall(data)
            except OSError:
                return False
        return True
