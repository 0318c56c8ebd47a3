"""Idle connections: how many one server holds while it keeps answering.

Opens idle TCP connections (connected, nothing sent) in steps of ``--step``
up to ``--max``; after each step times ``GET /health`` and ``POST /jobs`` on
a fresh connection. Stops at the first step the server does not answer (or
exits) and prints where. Raises this process's open-file limit to its hard
limit; the server raises its own (``--connection-limit`` + 256). A server
with ``--header-timeout`` closes connections that send nothing: give it a
long one (``TASKFRAME_HEADER_TIMEOUT=600``, which older builds ignore) to
measure what it holds; the end line counts those the server closed.

    .venv/bin/python bench/idle_connections.py [--max 3000 --step 100]
    .venv/bin/python bench/idle_connections.py --bin /other/venv/bin   # another build
"""

from __future__ import annotations

import argparse
import resource
import shlex
import socket
import sys
import time
from pathlib import Path

from loadgen import Server, common_options, request, summary

LATER = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600}


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)  # (with a timeout set, recv would first wait that long)
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(parser)
    parser.add_argument("--max", type=int, default=3000)
    parser.add_argument("--step", type=int, default=100)
    opts = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bin_dir = opts.bin or Path(sys.executable).parent
    # Large enough that the limit is not what is measured; the idle ones must stay open.
    args = ["--connection-limit", str(opts.max + 100), *shlex.split(opts.server_args)]
    server = Server(bin_dir, opts.db, args)
    held: list[socket.socket] = []
    timings: list[float] = []
    died_at = None
    try:
        while len(held) < opts.max:
            for _ in range(opts.step):
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            start = time.perf_counter()
            try:
                ok = request(server.port, "GET", "/health", timeout=20)[0] == 200
                ok = ok and request(server.port, "POST", "/jobs", LATER, timeout=20)[0] == 201
            except OSError:
                ok = False
            timings.append(time.perf_counter() - start)
            if not ok or server.popen.poll() is not None:
                died_at = len(held)
                break
        alive = server.popen.poll() is None
        closed = sum(1 for sock in held if _closed_by_peer(sock))
        print(f"server flags: {' '.join(args)}")
        if died_at is None:
            print(
                f"  answered with {len(held)} idle connections open ({closed} of them closed "
                f"by the server meanwhile); server alive: {alive}"
            )
        else:
            print(
                f"  stopped answering between {died_at - opts.step} and {died_at} idle "
                f"connections; server alive: {alive}"
            )
        print(f"  GET /health + POST /jobs after each step: {summary(timings)}")
        tail = server.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        if died_at is not None and tail:
            print("  server log ends: " + " | ".join(tail))
    finally:
        for sock in held:
            sock.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
