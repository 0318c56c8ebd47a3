"""Connections that send nothing, or trickle, must not stop a real server answering others.

- waitress waited on its sockets with ``select()``, which fails past file
  descriptor 1024: about 1,010 idle connections ended the server process.
- waitress's ``channel_timeout`` restarts at every byte, so connections that
  send a header byte every few seconds held every slot of
  ``--connection-limit`` for ever; ``--header-timeout`` is a total deadline.

The server's flags go through ``TASKFRAME_*`` variables, which a build without
them ignores (so the tests show the old fault rather than a usage error).
"""

from __future__ import annotations

import resource
import socket
import threading
import time

import pytest
import requests

from tests.processes import wait_until

LATER = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600}


def raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the open-file hard limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def answers(url: str) -> None:
    """GET /health and POST /jobs on fresh connections; both must succeed."""
    health = requests.get(f"{url}/health", timeout=30)
    assert health.status_code == 200, health.text
    submitted = requests.post(f"{url}/jobs", json=LATER, timeout=30)
    assert submitted.status_code == 201, submitted.text


def closed_by_peer(sock: socket.socket) -> bool:
    """The server closed ``sock`` (or answered on it, which it does only to close it)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # b"" (closed) or the start of a 408
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.timeout(180)
def test_1500_idle_connections_do_not_stop_the_server(tmp_path, start_server):
    count = 1500
    raise_own_file_limit(count + 500)
    # A long header timeout: the connections must stay held while we look.
    server = start_server(str(tmp_path / "jobs.db"), env={"TASKFRAME_HEADER_TIMEOUT": "300"})
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        # Accepted in order: this answer comes after the server took all of them.
        answers(server.url)
        assert server.alive(), server.output()
        still_open = [sock for sock in held if not closed_by_peer(sock)]
        assert len(still_open) == count, f"the server closed {count - len(still_open)}"
        answers(server.url)
    finally:
        for sock in held:
            sock.close()
    answers(server.url)
    assert server.alive()
    assert "Traceback" not in server.output()


class Tricklers:
    """Connections that send a request one byte at a time, reconnecting when closed.

    ``kind`` "header": the request line and headers, never finished;
    "body": complete headers, then a 100,000-byte body.
    """

    HEADER = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
    BODY = (
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )

    def __init__(self, port: int, count: int, kind: str, every: float) -> None:
        self.port, self.every = port, every
        self.prefix = self.BODY if kind == "body" else self.HEADER
        self.sockets = [self._open() for _ in range(count)]
        self.reopened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setblocking(False)
        sock.send(self.prefix[:1] if self.prefix is self.HEADER else self.prefix)
        return sock

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            for index, sock in enumerate(self.sockets):
                try:
                    if closed_by_peer(sock):
                        raise ConnectionResetError
                    sock.send(b"a")
                except OSError:
                    sock.close()
                    self.sockets[index] = self._open()
                    self.reopened += 1

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()


@pytest.mark.timeout(120)
def test_connections_trickling_their_request_do_not_lock_others_out(tmp_path, start_server):
    raise_own_file_limit(1000)
    server = start_server(
        str(tmp_path / "jobs.db"),
        *("--connection-limit", "40"),
        env={"TASKFRAME_HEADER_TIMEOUT": "2"},
    )
    # 60 connections for 40 slots (less the listening socket's), trickling a byte
    # every half second, reconnecting as soon as the server closes them.
    headers = Tricklers(server.port, 40, "header", every=0.5)
    bodies = Tricklers(server.port, 20, "body", every=0.5)
    try:
        # All 60 are connected, so this client queues behind them for a slot.
        end = time.monotonic() + 8  # four header timeouts
        rounds = 0
        while time.monotonic() < end:
            answers(server.url)
            rounds += 1
        # The server closed trickling connections (and they came back, as an attacker's do).
        wait_until(lambda: headers.reopened and bodies.reopened, timeout=10)
        assert rounds > 1
    finally:
        headers.stop()
        bodies.stop()
    assert server.alive()
    assert "did not send their request in time (--header-timeout 2s)" in server.output()
    answers(server.url)


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes the connection (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    raw = b""
    try:
        while chunk := sock.recv(65536):
            raw += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:  # it closed with our unread bytes pending: raw is what came
        pass
    return raw


@pytest.mark.timeout(90)
def test_a_chunked_body_is_refused_once_it_passes_the_limit_not_at_the_end(tmp_path, start_server):
    limit = 65536
    server = start_server(str(tmp_path / "jobs.db"), "--max-body", str(limit))
    head = (
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 4096
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        while sent <= limit + 8192:  # a little over the limit, far below 16 x --max-body
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # it answered and closed already: what we want to see below
            sent += len(chunk)
        # No more is sent: main waits for the rest of a body up to 16 x --max-body.
        answer = read_answer(sock, timeout=20)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"title": "Request body too large"' in rest and b"65536 bytes" in rest
    # A chunked body within the limit is read as before.
    jobs = requests.post(
        f"{server.url}/jobs",
        data=iter([b'{"type": "sleep", ', b'"payload": {"duration": 0}}']),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert jobs.status_code == 201, jobs.text
