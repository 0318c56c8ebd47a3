"""Slow clients: connections trickling a request header must not lock others out.

Holds ``--slow`` (300) connections that each send a request header one byte
every ``--every`` (2) seconds and never finish it; when the server closes one,
it is opened again at once (a sustained attack; ``--no-reconnect`` lets them
go). Meanwhile a normal client times ``GET /health`` and ``POST /jobs``, each
on a new connection as a newly arriving client does, for ``--seconds``. Run it
with the default settings and with a lowered limit:

    .venv/bin/python bench/slow_clients.py
    .venv/bin/python bench/slow_clients.py --server-args "--connection-limit 200"
    .venv/bin/python bench/slow_clients.py --bin /other/venv/bin   # another build
"""

from __future__ import annotations

import argparse
import resource
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

from loadgen import Server, common_options, request, summary

LATER = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600}
HEADER = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "


class Trickle:
    """The slow connections, served by one thread with non-blocking sockets."""

    def __init__(self, port: int, count: int, every: float, reconnect: bool) -> None:
        self.port, self.every, self.reconnect = port, every, reconnect
        self.sockets: list[socket.socket | None] = [self._open() for _ in range(count)]
        self.closed_by_server = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setblocking(False)
        sock.send(HEADER[:1])
        return sock

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            for index, sock in enumerate(self.sockets):
                if sock is None:
                    continue
                try:
                    sock.recv(1, socket.MSG_PEEK)  # b"" or a 408: the server closed it
                    closed = True
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if not closed:
                    try:
                        sock.send(b"a")
                        continue
                    except OSError:
                        pass
                self.closed_by_server += 1
                sock.close()
                self.sockets[index] = self._open() if self.reconnect else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(parser)
    parser.add_argument("--slow", type=int, default=300, help="trickling connections")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between their bytes")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of measurement")
    parser.add_argument("--no-reconnect", dest="reconnect", action="store_false")
    opts = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bin_dir = opts.bin or Path(sys.executable).parent
    server = Server(bin_dir, opts.db, shlex.split(opts.server_args))
    trickle = Trickle(server.port, opts.slow, opts.every, opts.reconnect)
    health: list[float] = []
    submit: list[float] = []
    failures = 0
    try:
        end = time.monotonic() + opts.seconds
        while time.monotonic() < end:
            for path, method, body, into in (
                ("/health", "GET", None, health),
                ("/jobs", "POST", LATER, submit),
            ):
                start = time.perf_counter()
                try:
                    status = request(server.port, method, path, body, timeout=60)[0]
                except OSError:
                    status = 0
                if status not in (200, 201):
                    failures += 1
                into.append(time.perf_counter() - start)
            time.sleep(0.05)
        print(
            f"{opts.slow} connections trickling a header byte every {opts.every:g} s "
            f"({'reconnecting' if opts.reconnect else 'not reconnecting'} when closed), "
            f"server flags: {opts.server_args or '(defaults)'}"
        )
        print(f"  GET /health (new connection each): {summary(health)}")
        print(f"  POST /jobs  (new connection each): {summary(submit)}")
        print(
            f"  probe failures {failures}; slow connections closed by the server: "
            f"{trickle.closed_by_server}; server alive: {server.popen.poll() is None}"
        )
    finally:
        trickle.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
