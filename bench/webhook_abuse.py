"""Webhook receivers that misbehave: server memory, and everyone else's latency.

1. A receiver answers a 2xx with a huge body (``--size-mb``, 800 by default):
   the server's VmRSS and VmHWM (peak) before the delivery, when the receiver's
   answer ended, and 3 s later (what is kept).
2. Four receivers trickle their answers one byte every ``--interval`` s (5)
   for ``--trickle-seconds`` (60); meanwhile ``--fast`` jobs notify a prompt
   receiver one after the other: time from the job's finish (the cancel
   request) to the prompt receiver's receipt, p50 and max; first with nobody
   trickling, then with the four trickling. Server settings are the defaults.

Real server process (SQLite in a temporary folder), receivers in this process.
Prints figures; nothing is asserted.

    .venv/bin/python bench/webhook_abuse.py [--size-mb 800] [--fast 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from taskframe.testing.processes import TaskframeServer

MIB = 1 << 20


class Receiver:
    """A receiver on its own port. ``kind``: prompt (204), huge, or trickle."""

    def __init__(
        self, kind: str, size: int = 0, interval: float = 5.0, seconds: float = 60
    ) -> None:
        self.kind, self.size, self.interval, self.seconds = kind, size, interval, seconds
        self.received: list[float] = []
        self.sent = 0
        self.done = threading.Event()
        self.stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(time.monotonic())
                try:
                    receiver.answer(self)
                except OSError:
                    pass  # the server hung up
                finally:
                    self.close_connection = True
                    receiver.done.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.kind == "prompt":
            handler.send_response(204)
            handler.end_headers()
        elif self.kind == "huge":
            handler.send_response(200)
            handler.send_header("Content-Length", str(self.size))
            handler.end_headers()
            chunk = b"x" * MIB
            while self.sent < self.size:
                handler.wfile.write(chunk)
                self.sent += len(chunk)
        else:
            end = time.monotonic() + self.seconds
            for byte in b"HTTP/1.1 200 OK\r\n" * 100:
                if self.stop.wait(self.interval) or time.monotonic() > end:
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def memory(pid: int) -> dict[str, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def finish(server: TaskframeServer, url: str) -> float:
    """Finish a job notifying ``url``; the monotonic time of its finish."""
    job = server.submit("sleep", {"duration": 0}, delay=3600, notify_url=url)
    started = time.monotonic()
    server.post(f"/jobs/{job['id']}/cancel").raise_for_status()
    return started


def huge_answer(server: TaskframeServer, size: int) -> None:
    receiver = Receiver("huge", size=size)
    try:
        before = memory(server.pid)
        finish(server, receiver.url)
        receiver.done.wait(600)
        ended = memory(server.pid)
        time.sleep(3)
        later = memory(server.pid)
    finally:
        receiver.close()
    print(
        f"1. a {size // MIB} MiB answer ({receiver.sent // MIB} MiB of it sent before the hang-up)"
    )
    for name, figures in (("before", before), ("answer ended", ended), ("3 s later", later)):
        print(
            f"   {name:>13}: VmRSS {figures['VmRSS']:7.1f} MiB  VmHWM {figures['VmHWM']:7.1f} MiB"
        )
    print(f"   growth: VmRSS {later['VmRSS'] - before['VmRSS']:+.1f} MiB, "
          f"peak {later['VmHWM'] - before['VmHWM']:+.1f} MiB")  # fmt: skip


def latencies(server: TaskframeServer, prompt: Receiver, count: int, wait: float) -> list[float]:
    found = []
    for _ in range(count):
        seen = len(prompt.received)
        started = finish(server, prompt.url)
        deadline = time.monotonic() + wait
        while len(prompt.received) == seen and time.monotonic() < deadline:
            time.sleep(0.001)
        found.append(
            prompt.received[seen] - started if len(prompt.received) > seen else float("inf")
        )
    return found


def show(label: str, found: list[float]) -> None:
    late = sum(x == float("inf") for x in found)
    done = sorted(x for x in found if x != float("inf")) or [float("inf")]
    print(
        f"   {label}: p50 {statistics.median(done) * 1000:8.1f} ms  max "
        f"{done[-1] * 1000:8.1f} ms  ({len(found)} deliveries, {late} not within the wait)"
    )


def trickling(server: TaskframeServer, args: argparse.Namespace) -> None:
    prompt = Receiver("prompt")
    slow = [
        Receiver("trickle", interval=args.interval, seconds=args.trickle_seconds) for _ in "abcd"
    ]
    try:
        print(f"2. a prompt receiver's delivery latency (finish -> received), {args.fast} in a row")
        show("nobody trickling     ", latencies(server, prompt, args.fast, 10))
        for receiver in slow:
            finish(server, receiver.url)
        deadline = time.monotonic() + 30
        while not all(r.received for r in slow) and time.monotonic() < deadline:
            time.sleep(0.01)
        print(f"   {sum(bool(r.received) for r in slow)} trickling receivers reached "
              f"(a byte every {args.interval:g} s for {args.trickle_seconds:g} s)")  # fmt: skip
        show("4 receivers trickling", latencies(server, prompt, args.fast, args.trickle_seconds))
    finally:
        for receiver in [prompt, *slow]:
            receiver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=800)
    parser.add_argument("--fast", type=int, default=20)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--trickle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for part in (lambda s: huge_answer(s, args.size_mb * MIB), lambda s: trickling(s, args)):
            server = TaskframeServer(
                str(Path(folder) / f"db-{time.monotonic_ns()}.sqlite"),
                Path(folder) / "server.log",
                *("--webhook-secret", "bench"),
            )
            try:
                part(server)
            finally:
                server.stop()
    requests.Session().close()


if __name__ == "__main__":
    main()
