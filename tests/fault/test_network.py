"""A worker behind a faulty network (tests/fault/tcp_proxy.py): resets and blackholes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.fault import (
    attempts,
    get_job,
    server_args,
    sleep_job,
    submit,
    worker_args,
)
from tests.fault.tcp_proxy import BLACKHOLE, PASS, RESET, TcpProxy
from tests.processes import wait_for_start, wait_until

#: Workers log each job's start at DEBUG: tests wait for it (wait_for_start).
DEBUG = ("--log-level", "DEBUG")


@pytest.fixture
def proxy_to() -> Iterator:
    """Factory: proxy_to(port) -> a started TcpProxy; all stopped at teardown.

    Ask for it before ``start_worker``, so that workers stop (and report) first.
    """
    proxies: list[TcpProxy] = []

    def start(port: int) -> TcpProxy:
        proxies.append(TcpProxy(port).start())
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.stop()


def _wait_running(http, url, job_id, worker_id):
    job = wait_until(
        lambda: (job := get_job(http, url, job_id))["status"] == "running" and job,
        timeout=30,
        message=f"job {job_id} to start",
    )
    assert job["worker_id"] == worker_id
    return job


@pytest.mark.fault
@pytest.mark.timeout(60)
def test_short_resets_do_not_cost_the_lease(
    sqlite_url, start_server, proxy_to, start_worker, http, tmp_path
):
    # A TTL of 3 s leaves a safe margin over the ~1 s outage plus the retry
    # delays on a loaded machine: the point is that heartbeats resume in time.
    server = start_server(sqlite_url, *server_args(lease_ttl="3"))
    proxy = proxy_to(server.port)
    worker = start_worker([proxy.url], *worker_args(tmp_path / "files", "behind-proxy"), *DEBUG)
    job = submit(http, server.url, sleep_job(3))
    _wait_running(http, server.url, job["id"], "behind-proxy")
    wait_for_start(worker, job["id"])  # the lease answer came through the proxy
    resets_before = proxy.resets
    log = worker.output
    proxy.set_mode(RESET)
    began = time.monotonic()
    # An outage of a second (well within the lease), and at least until the worker
    # noticed it: on a slow machine that may take longer than the second.
    wait_until(
        lambda: proxy.resets > resets_before and "failed, retrying with backoff" in log(),
        timeout=20,
        message="the outage to hit the worker's connections and the worker to notice",
    )
    time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))  # the outage's length: the point
    proxy.set_mode(PASS)
    assert proxy.resets > resets_before, "the outage hit no connection"

    done = http.get(f"{server.url}/jobs/{job['id']}", params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["worker_id"] == "behind-proxy"
    history = attempts(http, server.url, job["id"])
    # Reported once, however often the report had to be re-sent.
    assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "succeeded")]
    log = worker.output()
    assert "failed, retrying with backoff" in log, "the worker never noticed the outage"
    assert "lost the lease" not in log


@pytest.mark.fault
@pytest.mark.timeout(90)
def test_blackhole_longer_than_the_lease(
    sqlite_url, start_server, proxy_to, start_worker, http, tmp_path
):
    server = start_server(sqlite_url, *server_args())  # lease TTL 2 s
    proxy = proxy_to(server.port)
    file_root = tmp_path / "files"
    cut_off = start_worker([proxy.url], *worker_args(file_root, "cut-off"), *DEBUG)
    job = submit(http, server.url, sleep_job(2, max_attempts=5))
    job_id = job["id"]
    _wait_running(http, server.url, job_id, "cut-off")
    # Cut off only once the worker has the job in hand (its lease answer passed).
    wait_for_start(cut_off, job_id)
    proxy.set_mode(BLACKHOLE)
    try:
        # Silence: the lease expires, and a worker that still reaches the
        # server runs the job again while the first one finishes unheard.
        start_worker([server.url], *worker_args(file_root, "direct"))
        done = wait_until(
            lambda: (
                (current := get_job(http, server.url, job_id))["status"] == "succeeded" and current
            ),
            timeout=40,
            message="the job to be re-run by the other worker",
        )
    finally:
        proxy.set_mode(PASS)  # what the cut-off worker sent arrives now, late
    assert done["worker_id"] == "direct"
    fenced = re.compile(rf"refused the succeeded outcome of job {job_id} \(409")
    wait_until(
        lambda: fenced.search(cut_off.output()),
        timeout=30,
        message=f"the late report to be refused; the worker's log:\n{cut_off.output()}",
    )
    history = attempts(http, server.url, job_id)
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in history] == [
        (1, "cut-off", "lease_expired"),
        (2, "direct", "succeeded"),
    ]
    final = get_job(http, server.url, job_id)
    assert final == done, "the late report changed the job"


@pytest.mark.fault
@pytest.mark.timeout(60)
def test_an_outcome_held_up_on_its_way_keeps_its_lease(
    sqlite_url, start_server, proxy_to, start_worker, http, tmp_path
):
    """The worker is alive and heartbeating; only its report is held up.

    Known bug (fails today): once a job ends, the worker stops renewing its
    lease, although the outcome is not delivered yet (worker/loop.py,
    ``_heartbeat_loop`` renews only ``self._active``; ``_finish`` has moved the
    job to the outbox). A report delayed past the lease TTL (a stalled request,
    the lease loop's retry backoff after an outage) is then refused with 409
    and the job runs again, although its worker never went away.
    """
    server = start_server(sqlite_url, *server_args())  # lease TTL 2 s
    proxy = proxy_to(server.port)
    worker = start_worker([proxy.url], *worker_args(tmp_path / "files", "held-up"), *DEBUG)
    job_id = submit(http, server.url, sleep_job(1.5))["id"]
    _wait_running(http, server.url, job_id, "held-up")
    # Held up only once the worker has the job in hand (its lease answer passed).
    wait_for_start(worker, job_id)
    # The lease loop's requests (which carry the outcome) stall for twice the
    # lease TTL; the heartbeat thread's requests pass all along.
    proxy.set_mode(BLACKHOLE, paths=("/lease",))
    time.sleep(4.0)  # the hold-up's length: the point of the test
    proxy.set_mode(PASS)
    done = http.get(f"{server.url}/jobs/{job_id}", params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
    log = worker.output()
    assert "heartbeats failed" not in log, "the heartbeats should have passed"
    history = attempts(http, server.url, job_id)
    assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "succeeded")], (
        f"the live worker's lease expired while its outcome was on the way; attempts: {history}"
    )
