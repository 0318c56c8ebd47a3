"""The ``Worker`` loop driven by a fake of the API client (``client=``), in both pools.

The unit under test is the loop: which slots it leases, how outcomes reach
the server (and reach it again after a lost request), timeouts,
cancellations and shutdown. The fake stands in for the taskframe API client
object only; the executors are real (in-process ones for the thread pool, the
installed ``sleep`` for the process pool, whose children load plugins from
entry points).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from marshmallow import Schema, fields

from taskframe.client.errors import Unavailable
from taskframe.core import Executor, ExecutorContext, hookimpl
from taskframe.core.plugins import PluginSet, load_plugins
from taskframe.plugins import sleep
from taskframe.worker.config import WorkerConfig
from taskframe.worker.loop import Worker
from tests.processes import wait_until

pytestmark = pytest.mark.timeout(60)


class FakeClient:
    """Hands out scripted jobs through ``lease`` and records every call."""

    urls = ["http://fake"]

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []  # one per lease call
        self.outcomes: dict[int, dict[str, Any]] = {}  # acknowledged, by job id
        self.held: set[int] = set()  # leased, no outcome acknowledged yet
        self.overcommitted: list[str] = []
        self.cancel: set[int] = set()
        self.released: list[int] = []
        self.lose = 0  # lease calls carrying outcomes that fail with a connection error
        self.concurrency = 0
        self.live_log = False  # whether it announces that it takes live log lines
        self.beats: list[dict[str, Any]] = []  # every heartbeat entry sent
        self.exchanges = 0  # lease and heartbeat calls
        self.closed = threading.Event()  # the worker has ended (it closes its client last)
        self.hold_polls = False  # a long poll with nothing to lease waits for a job (or wait)
        self.polls_open = 0  # long polls held now
        self.arrived = threading.Condition(self.lock)  # add() and interrupt() notify it
        self.interrupted = False
        self.refuse_polls = False  # a long poll with nothing to lease: "too many, retry after 1"
        self._next_id = 1

    def add(self, job_type: str, payload: dict[str, Any], **fields: Any) -> int:
        with self.lock:
            job_id, self._next_id = self._next_id, self._next_id + 1
            self.queue.append(
                {
                    "id": job_id,
                    "type": job_type,
                    "payload": payload,
                    "attempts": 1,
                    "lease_id": f"lease-{job_id}",
                    "timeout": None,
                    **fields,
                }  # fmt: skip
            )
            self.arrived.notify_all()
        return job_id

    def lease(self, worker_id, types, max_jobs, wait, completions, request_id=None,
              resent=False, info=None) -> dict[str, Any]:  # fmt: skip
        with self.lock:
            self.exchanges += 1
            done = [c["job_id"] for c in completions]
            self.calls.append({"max": max_jobs, "completions": done, "request_id": request_id,
                               "resent": resent, "wait": wait})  # fmt: skip
            if completions and self.lose > 0:
                self.lose -= 1
                raise Unavailable("connection reset by the fake")
            for item in completions:
                self.outcomes.setdefault(item["job_id"], item)
                self.held.discard(item["job_id"])
            if len(self.held) + max_jobs > self.concurrency:
                self.overcommitted.append(f"{sorted(self.held)} held, asked for {max_jobs}")
            if self.hold_polls and max_jobs and wait and not self.queue:
                self.polls_open += 1
                try:
                    self.arrived.wait_for(lambda: self.queue or self.interrupted, wait)
                finally:
                    self.polls_open -= 1
                if self.interrupted:
                    raise Unavailable("the fake's long poll was interrupted")
            jobs, self.queue = self.queue[:max_jobs], self.queue[max_jobs:]
            self.held |= {job["id"] for job in jobs}
        answers = [{"job_id": c["job_id"], "ok": True} for c in completions]
        if not jobs and wait and self.refuse_polls:
            return {"jobs": [], "retry_after": 1, "lease_ttl": 30, "completions": answers}
        if not jobs and wait:
            time.sleep(min(wait, 0.02))  # a (short) long poll
        return {"jobs": jobs, "lease_ttl": 30, "completions": answers, **self.announced()}

    def announced(self) -> dict[str, Any]:
        return {"live_log": True} if self.live_log else {}

    def heartbeats(self, worker_id, leases) -> dict[str, Any]:
        with self.lock:
            self.exchanges += 1
            self.beats += leases
            answers = [
                {"job_id": x["job_id"], "ok": True, "cancel_requested": x["job_id"] in self.cancel}
                for x in leases
            ]
        return {"leases": answers, "lease_ttl": 30, **self.announced()}

    def interrupt(self) -> None:
        """What the worker calls to end a long poll it abandons (when it stops)."""
        with self.lock:
            self.interrupted = True
            self.arrived.notify_all()

    def release(self, job_id, worker_id, lease_id) -> None:
        with self.lock:
            self.released.append(job_id)
            self.held.discard(job_id)

    def close(self) -> None:
        self.closed.set()

    def talks(self, times: int) -> None:
        """Wait until the worker has called the server ``times`` more times."""
        since = self.exchanges
        wait_until(lambda: self.exchanges >= since + times, 10, 0.005, f"{times} calls")

    def outcome(self, job_id: int, timeout: float = 20.0) -> dict[str, Any]:
        return wait_until(lambda: self.outcomes.get(job_id), timeout, message=f"job {job_id}")


class Gates:
    """In-process executors: ``block`` waits for its gate (or its cancel event)."""

    __name__ = "gates"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)

    def block(self, payload: dict[str, Any], context: ExecutorContext) -> str:
        self.started.release()
        while not self.gate.wait(0.005):  # until the gate opens, watching for a cancel
            if payload.get("honour_cancel", True) and context.cancel_event.is_set():
                raise RuntimeError("stopped on cancel")
        return "opened"

    @staticmethod
    def echo(payload: dict[str, Any], context: ExecutorContext) -> str:
        return str(payload["text"])

    @hookimpl
    def taskframe_register_executors(self, register: Callable[[Executor], None]) -> None:
        schema = type("BlockSchema", (Schema,), {"honour_cancel": fields.Boolean()})()
        register(Executor(name="block", schema=schema, run=self.block))
        echo_schema = type("EchoSchema", (Schema,), {"text": fields.String()})()
        register(Executor(name="echo", schema=echo_schema, run=self.echo))


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def plugins(gates: Gates) -> PluginSet:
    return load_plugins(extra_plugins=(sleep, gates), load_entry_points=False)


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def run(plugins: PluginSet) -> Iterator[Callable[..., Worker]]:
    """run(client, **settings) -> a Worker on that fake client, in a thread; stopped after."""
    running: list[tuple[Worker, threading.Thread]] = []

    def start_worker(client: FakeClient, **settings: Any) -> Worker:
        settings = {"poll_interval": 0.05, "heartbeat_interval": 0.05, **settings}
        config = WorkerConfig(("http://fake",), "w-test", options=argparse.Namespace(), **settings)
        client.concurrency = config.concurrency
        worker = Worker(config, plugins, client=client)  # type: ignore[arg-type]
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        assert worker.started.wait(30)
        return worker

    yield start_worker
    for worker, thread in running:
        worker.stop()
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop"


@pytest.fixture
def start(fake: FakeClient, run: Callable[..., Worker]) -> Callable[..., Worker]:
    """start(concurrency=..., pool=..., ...) -> a Worker on ``fake``, in a thread; stopped after."""
    return lambda **settings: run(fake, **settings)


def test_it_leases_only_free_slots(fake, gates, start) -> None:
    ids = [fake.add("block", {}) for _ in range(5)]
    start(concurrency=2)
    for _ in range(2):
        assert gates.started.acquire(timeout=10)
    fake.talks(3)  # the worker keeps talking to the server meanwhile (heartbeats)
    assert len(fake.queue) == 3 and fake.held == set(ids[:2])
    gates.gate.set()
    for job_id in ids:
        assert fake.outcome(job_id)["status"] == "succeeded"
    assert fake.overcommitted == []
    assert max(call["max"] for call in fake.calls) == 2


def test_a_long_poll_stays_open_while_jobs_run_and_outcomes_go_beside_it(
    fake, gates, start
) -> None:
    """A job queued while others run starts when it arrives, not at the worker's next
    look: with free slots and the queue empty, the worker waits at the server (a long
    poll) while its jobs run, and reports each job that ends at once, beside it."""
    fake.hold_polls = True
    first = fake.add("block", {})
    start(concurrency=2, poll_interval=30)
    assert gates.started.acquire(timeout=10)
    wait_until(lambda: fake.polls_open == 1, 10, message="a long poll while the job runs")
    calls_before = len(fake.calls)

    gates.gate.set()  # the job ends while the poll is open
    assert fake.outcome(first)["status"] == "succeeded"
    assert fake.polls_open == 1  # still open: the outcome went beside it
    reports = [call for call in fake.calls[calls_before:] if call["completions"]]
    assert [(call["max"], call["completions"], call["wait"]) for call in reports] == [
        (0, [first], 0)
    ]

    second = fake.add("echo", {"text": "arrived"})  # answers the open poll
    assert fake.outcome(second)["result"] == "arrived"
    assert fake.overcommitted == []


def test_a_refused_long_poll_makes_a_busy_worker_look_now_and_then(fake, gates, start) -> None:
    """A server with as many long polls as it allows answers "retry after": a worker
    with jobs running then asks without waiting, at most every BUSY_POLL, for a while,
    instead of long-polling again at once (which would spin)."""
    fake.refuse_polls = True
    fake.add("block", {})
    start(concurrency=2, poll_interval=30)
    assert gates.started.acquire(timeout=10)
    busy = lambda: [call for call in fake.calls[1:] if call["wait"]]  # noqa: E731
    wait_until(busy, 10, message="a long poll while the job runs")
    refused_at = len(fake.calls)
    # The looks that follow ask without waiting (a spinning worker would long-poll again).
    wait_until(lambda: len(fake.calls) >= refused_at + 3, 10, message="three more looks")
    assert len(busy()) == 1
    assert all(call["wait"] == 0 for call in fake.calls[refused_at:])
    gates.gate.set()


def test_an_outcome_lost_on_the_way_is_delivered_again(fake, gates, start) -> None:
    gates.gate.set()
    start(concurrency=1)
    fake.lose = 3
    job_id = fake.add("block", {})

    assert fake.outcome(job_id)["result"] == "opened"

    carrying = [call for call in fake.calls if job_id in call["completions"]]
    assert len(carrying) == 4  # three lost answers, then the one that came back
    # A request whose answer was lost goes again under its id, marked resent.
    assert len({call["request_id"] for call in carrying}) == 1
    assert [call["resent"] for call in carrying] == [False, True, True, True]


def test_a_timed_out_job_is_reported_while_its_thread_still_runs(fake, gates, start) -> None:
    start(concurrency=1)
    job_id = fake.add("block", {"honour_cancel": False}, timeout=0.1)

    outcome = fake.outcome(job_id)

    assert outcome["status"] == "failed" and outcome["error"] == "timed out after 0.1 s"
    assert outcome["retryable"] is True
    # The deaf thread holds its slot: nothing more is leased until it returns.
    other = fake.add("block", {})
    time.sleep(0.3)  # six poll intervals in which it must lease nothing (it calls no one)
    assert fake.queue and fake.queue[0]["id"] == other
    gates.gate.set()
    assert fake.outcome(other)["status"] == "succeeded"


def test_a_cancel_request_from_the_heartbeats_ends_the_job_cancelled(fake, gates, start) -> None:
    start(concurrency=1)
    job_id = fake.add("block", {})
    assert gates.started.acquire(timeout=10)
    fake.cancel.add(job_id)

    outcome = fake.outcome(job_id)

    assert outcome["status"] == "cancelled" and outcome["retryable"] is False
    assert "stopped on cancel" in outcome["error"]


def test_shutdown_lets_a_job_finish_within_the_grace(fake, gates, start) -> None:
    worker = start(concurrency=1, shutdown_grace=10)
    job_id = fake.add("block", {})
    assert gates.started.acquire(timeout=10)
    worker.stop()
    fake.talks(3)  # heartbeats, through the grace
    assert job_id not in fake.outcomes  # still running, still held
    queued = fake.add("block", {})
    gates.gate.set()
    assert fake.outcome(job_id)["status"] == "succeeded"
    assert fake.closed.wait(10)  # the worker has ended
    assert fake.queue[0]["id"] == queued  # a stopping worker leases nothing more


def test_shutdown_releases_a_job_past_the_grace(fake, gates, start) -> None:
    worker = start(concurrency=1, shutdown_grace=0.2)
    job_id = fake.add("block", {})
    assert gates.started.acquire(timeout=10)
    worker.stop()
    wait_until(lambda: fake.released == [job_id], 10, message="the release")
    assert job_id not in fake.outcomes  # released, not reported: it runs again elsewhere


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_sleep_jobs_in_both_pools(fake, start, caplog, pool: str) -> None:
    caplog.set_level(logging.INFO)  # job logs keep what is logged at the worker's level
    start(concurrency=2, pool=pool)
    done = fake.add("sleep", {"duration": 0.05})
    timed_out = fake.add("sleep", {"duration": 30}, timeout=0.2)
    assert fake.outcome(done)["status"] == "succeeded"
    assert "slept" in (fake.outcome(done)["log"] or "")  # captured in the job's process too
    outcome = fake.outcome(timed_out)  # sleep watches its deadline too: either may tell first
    assert outcome["status"] == "failed" and "timed out after" in outcome["error"]
    cancelled = fake.add("sleep", {"duration": 30})
    wait_until(lambda: cancelled in fake.held and not fake.queue, 10, message="lease")
    fake.cancel.add(cancelled)
    outcome = fake.outcome(cancelled)
    # The cancel event reaches the job in its process too: sleep stops and says so.
    assert outcome["status"] == "cancelled" and "SleepCancelled" in outcome["error"]
    assert fake.overcommitted == []


def test_jobs_are_logged_at_debug_and_summed_up_at_info(fake, gates, start, caplog) -> None:
    caplog.set_level(logging.INFO, logger="taskframe.worker")
    gates.gate.set()
    worker = start(concurrency=2)
    ids = [fake.add("block", {}) for _ in range(3)]
    for job_id in ids:
        fake.outcome(job_id)
    worker.stop()
    wait_until(lambda: any("stopped" in r.getMessage() for r in caplog.records), 10)
    messages = [r.getMessage() for r in caplog.records if r.name == "taskframe.worker"]
    assert not [m for m in messages if "succeeded in" in m or "started (" in m]
    assert any(m.startswith("in the last ") and m.endswith(": 3 jobs succeeded") for m in messages)


@pytest.mark.parametrize("announced", [True, False])
def test_a_running_jobs_log_rides_on_its_heartbeats_when_the_server_takes_it(
    fake, start, caplog, announced: bool
) -> None:
    caplog.set_level(logging.INFO)  # job logs keep what is logged at the worker's level
    fake.live_log = announced
    start(concurrency=1)
    first = fake.add("sleep", {"duration": 0.01})  # the lease answers announce it
    fake.outcome(first)
    job_id = fake.add("sleep", {"duration": 0.3})  # heartbeats every 0.05 s meanwhile
    assert fake.outcome(job_id)["status"] == "succeeded"
    logs = [beat["log"] for beat in fake.beats if beat["job_id"] == job_id and "log" in beat]
    if announced:
        assert logs and "sleeping 0.3 s" in logs[0]
    else:  # a server that does not take the field would refuse the whole request
        assert logs == []


class KeepsLittle(FakeClient):
    """Announces a ``max_result`` (bytes of a result's JSON that the server keeps)."""

    def announced(self) -> dict[str, Any]:
        return {**super().announced(), "max_result": 3000}


def test_a_result_is_measured_as_the_server_measures_it(run) -> None:
    """In UTF-8, as the server encodes it. Before: as ``json.dumps`` escapes it to
    ASCII, 6 bytes per "é", so a result the server keeps was failed as too large."""
    client = KeepsLittle()
    run(client, concurrency=1)
    fits = client.add("echo", {"text": "é" * 1000})  # 2,002 bytes in UTF-8
    too_large = client.add("echo", {"text": "e" * 3000})
    assert client.outcome(fits)["status"] == "succeeded"
    assert client.outcome(fits)["result"] == "é" * 1000
    assert client.outcome(too_large)["status"] == "failed"
    assert "3002 bytes" in client.outcome(too_large)["error"]
