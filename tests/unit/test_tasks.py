"""@task, its controls and its loading, in-process: run_task, Retry, retry_on,
current_job(), async tasks, tracebacks, progress, typed client submission,
tasks modules and entry points."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import logging
import sys
import threading
import time
import types
from typing import Any

import pytest
from marshmallow import Schema

from taskframe.client import JobFailed, ValidationError
from taskframe.client.typed import task_payload
from taskframe.core import Executor, ExecutorContext, PermanentError, Retry, current_job, task
from taskframe.core.model import Reported
from taskframe.core.plugins import TasksModuleError, load_plugins
from taskframe.core.schemas import MAX_TRACEBACK
from taskframe.core.task_modules import entry_point_plugins
from taskframe.testing import run_job, run_task
from taskframe.worker.aio import Interrupted, run_awaitable
from taskframe.worker.heartbeat import HeartbeatPlan, apply_answers
from taskframe.worker.jobs import JobEnd, RunningJob, execute_on_loop, traceback_text


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


@task(max_attempts=4)
def add(x: int, y: int = 2) -> int:
    """Add two numbers."""
    current_job().progress(0.5, "half")
    return x + y


# -- the decorator ----------------------------------------------------------------


def test_a_task_is_still_a_function():
    @task
    def plain(x: int, y: int = 2) -> int:
        return x + y

    assert plain(1, 2) == 3 and plain.name == "plain"
    assert add.description == "Add two numbers." and add.defaults == {"max_attempts": 4}
    with pytest.raises(RuntimeError, match="run_task"):  # called directly: no job
        add(1)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"name": "Add"}, "job type name 'Add' is invalid"),
        ({"queue": "Not A Queue"}, "is not a queue name"),
        ({"priority": 11}, "priority must be an integer from 1 to 10"),
        ({"max_attempts": 0}, "max_attempts must be an integer from 1 to 100"),
        ({"timeout": -1}, "timeout must be 0 to"),
        ({"backoff": -5}, "backoff must be 0 to"),
        ({"retry_on": (ValueError, "oops")}, "retry_on takes exception classes"),
    ],
)
def test_bad_options_are_refused_naming_the_function(options, problem):
    def f(x: int) -> int:
        return x

    with pytest.raises((ValueError, TypeError)) as caught:
        task(**options)(f)
    assert problem in str(caught.value) and "f" in str(caught.value)


@pytest.mark.parametrize("after", [-1, 8 * 86400, float("nan"), "30", True])
def test_retry_refuses_a_delay_out_of_bounds(after):
    with pytest.raises((ValueError, TypeError)):
        Retry(after=after)


def test_current_job_outside_a_task_says_where_it_works():
    with pytest.raises(RuntimeError, match="only while a task runs"):
        current_job()


# -- run_task: as a worker runs it ---------------------------------------------------


def test_run_task_validates_fills_defaults_and_runs():
    assert run_task(add, x=1) == 3
    with pytest.raises(ValidationError) as refused:
        run_task(add, x="1", z=2)
    assert set(refused.value.errors["payload"]) == {"x", "z"}
    assert run_job(add, {"x": 1}).progress == [(0.5, "half")]


def test_retry_counts_as_an_attempt_and_the_last_one_fails_with_the_reason():
    @task(max_attempts=3)
    def patient(until: int) -> int:
        if current_job().attempt < until:
            raise Retry(after=30, reason="rate limited")
        return current_job().attempt

    run = run_job(patient, {"until": 3})
    assert run.succeeded and run.result == 3
    assert [a.retry_after for a in run.attempts] == [30.0, 30.0, None]
    run = run_job(patient, {"until": 5})
    assert run.status == "failed" and len(run.attempts) == 3
    assert "rate limited" in run.error


def test_retry_on_and_permanent_errors_decide_what_is_retried():
    @task(max_attempts=3, retry_on=(ConnectionError,), backoff=7)
    def fetch(kind: str) -> None:
        if kind == "value":
            raise ValueError("bad")
        if kind == "permanent":
            raise PermanentError("never")
        raise ConnectionError("down")

    assert len(run_job(fetch, {"kind": "value"}).attempts) == 1
    assert len(run_job(fetch, {"kind": "permanent"}).attempts) == 1
    down = run_job(fetch, {"kind": "connection"})
    assert len(down.attempts) == 3 and [a.retry_after for a in down.attempts] == [7.0] * 3
    with pytest.raises(JobFailed) as failed:
        run_task(fetch, kind="value")
    assert failed.value.error == "ValueError: bad"
    assert 'raise ValueError("bad")' in failed.value.traceback


def test_a_result_that_is_not_json_fails_naming_its_type():
    @task
    def when() -> Any:
        return {"at": [1, {2, 3}]}

    run = run_job(when, {})
    assert run.status == "failed" and len(run.attempts) == 1
    assert "returned a set at result['at'][1], which is not JSON" in run.error


def test_async_tasks_run_and_report_progress():
    @task
    async def double(x: float) -> float:
        await asyncio.sleep(0)
        current_job().progress(1, "done")
        return x * 2

    run = run_job(double, {"x": 1.5})
    assert run.result == 3.0 and run.progress == [(1.0, "done")]


def test_the_follow_up_client_is_the_one_given():
    @task
    def follow() -> str:
        return current_job().client.submit("add", {"x": 1})

    class FakeClient:
        def submit(self, type: str, payload: dict) -> str:
            return f"{type} {payload}"

    assert run_job(follow, {}, client=FakeClient()).result == "add {'x': 1}"
    assert "no client here" in run_job(follow, {}).error


# -- pieces of the worker -----------------------------------------------------------


def context(**fields: Any) -> ExecutorContext:
    return ExecutorContext(job_id=1, attempt=1, deadline=fields.pop("deadline", None), **fields)


def test_a_coroutine_stops_when_the_job_is_cancelled_or_times_out():
    async def forever() -> None:
        await asyncio.sleep(3600)

    cancelled = context()
    threading.Timer(0.1, cancelled.cancel_event.set).start()
    with pytest.raises(Interrupted):
        run_awaitable(forever(), cancelled)
    with pytest.raises(TimeoutError):
        run_awaitable(forever(), context(deadline=time.monotonic() + 0.1))

    async def stubborn() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "cleaned up"
        return "slept"

    assert run_awaitable(stubborn(), context(deadline=time.monotonic() + 0.1)) == "cleaned up"


def test_tracebacks_keep_their_end_and_become_storable_text():
    try:
        raise ValueError("x" * 20000 + " the end \ud800 \x00")
    except ValueError as exc:
        text = traceback_text(exc)
    assert len(text) <= MAX_TRACEBACK
    assert text.startswith("[the traceback's first") and "characters are cut]" in text
    assert text.rstrip().endswith(" the end \ufffd \ufffd")


def test_only_failures_carry_a_traceback_and_a_retry_delay():
    running = RunningJob({"id": 1, "lease_id": "L"}, add, None)
    running.traceback, running.retry_after = "Traceback ...", 3.0
    failed = running.completion(JobEnd.failure("boom", retryable=True))
    assert failed["traceback"] == "Traceback ..." and failed["retry_after"] == 3.0
    assert "traceback" not in running.completion(JobEnd(Reported.SUCCEEDED, 1, None, True))


def test_progress_goes_out_once_acknowledged_and_again_if_not():
    running = RunningJob({"id": 7, "lease_id": "L"}, add, None)
    other = RunningJob({"id": 8, "lease_id": "M"}, add, None)  # reports nothing
    active = {"L": running, "M": other}
    plan = HeartbeatPlan(interval=3600.0)
    now = time.monotonic()
    assert len(plan.items([running, other], [], now)) == 2  # the first: every lease
    assert plan.items([running, other], [], now) == []  # then only news
    running.set_progress(0.5, "half")
    sent = plan.items([running, other], [], now)
    assert sent == [
        {"job_id": 7, "lease_id": "L", "progress": {"fraction": 0.5, "message": "half"}}
    ]
    apply_answers(active, sent, [])  # the request failed: no answer
    assert plan.items([running, other], [], now) == sent  # not acknowledged: again
    apply_answers(active, sent, [{"job_id": 7, "ok": True}])
    assert plan.items([running, other], [], now) == []
    assert active == {"L": running, "M": other}


def test_an_async_job_on_the_loop_ends_by_its_cancel_or_its_timeout():
    async def forever(payload: dict, context: ExecutorContext) -> None:
        await asyncio.sleep(3600)

    forever_type = Executor("forever", Schema(), forever)

    async def scenario() -> list[tuple]:
        outcomes = []
        for deadline in (None, time.monotonic() + 0.05):
            running = RunningJob({"id": 1, "lease_id": "L"}, forever_type, deadline)
            task = asyncio.create_task(execute_on_loop(running, argparse.Namespace(), None))
            running.on_cancel = task.cancel
            asyncio.get_running_loop().call_later(0.1, running.cancel)
            outcomes.append(await task)
        return outcomes

    cancelled, timed_out = asyncio.run(scenario())
    assert cancelled[0] == "failed" and cancelled[2].startswith("Interrupted")
    assert timed_out[0] == "failed" and timed_out[2].startswith("TimeoutError")


def test_progress_is_clamped_and_checked():
    seen: list[tuple[float, str | None]] = []
    ctx = context(on_progress=lambda f, m: seen.append((f, m)))
    ctx.progress(1.5, "x" * 500)
    ctx.progress(-1)
    assert seen[0] == (1.0, "x" * 200) and seen[1] == (0.0, None)
    with pytest.raises(ValueError):
        ctx.progress(float("nan"))
    with pytest.raises(TypeError):
        ctx.progress("half")  # type: ignore[arg-type]


# -- typed submission from Python ----------------------------------------------------


def test_a_tasks_arguments_are_checked_before_sending():
    @task
    def paint(point: Point, color: Color = Color.RED) -> None:
        pass

    assert task_payload(paint, None, {"point": Point(1, 2), "color": Color.BLUE}) == {
        "point": {"x": 1, "y": 2},
        "color": "blue",
    }
    with pytest.raises(ValidationError) as refused:
        task_payload(paint, {"point": {"x": "1"}}, {"colour": "red"})
    assert set(refused.value.errors["payload"]) == {"point", "colour"}
    with pytest.raises(TypeError, match="given both"):
        task_payload(paint, {"point": {"x": 1}}, {"point": {"x": 2}})


# -- tasks modules and entry points --------------------------------------------------


def module(name: str, source: str) -> types.ModuleType:
    found = types.ModuleType(name)
    exec(source, found.__dict__)  # noqa: S102 - the module under test
    sys.modules[name] = found
    return found


TASKS = "from taskframe.core import task\n\n@task\ndef {name}(x: int) -> int:\n    return x\n"


def test_tasks_modules_load_and_two_definitions_of_a_type_clash(caplog):
    module("tf_unit_tasks_a", TASKS.format(name="same"))
    module("tf_unit_tasks_b", TASKS.format(name="same"))
    module("tf_unit_empty", "X = 1\n")
    with caplog.at_level(logging.WARNING, "taskframe.plugins"):
        plugins = load_plugins(
            load_entry_points=False, tasks=["tf_unit_tasks_a", "tf_unit_tasks_b", "tf_unit_empty"]
        )
    assert plugins.owners["same"] == "tf_unit_tasks_a"
    assert "already registered by plugin 'tf_unit_tasks_a'" in plugins.failures["tf_unit_tasks_b"]
    assert "tasks module 'tf_unit_empty' defines no task" in caplog.text


def test_a_module_that_cannot_be_imported_is_one_line_naming_it():
    with pytest.raises(TasksModuleError) as caught:
        load_plugins(load_entry_points=False, tasks=["tf_unit_missing_module"])
    message = str(caught.value)
    assert "\n" not in message and "'tf_unit_missing_module'" in message


def test_an_entry_point_module_of_tasks_registers_its_tasks():
    only_tasks = module("tf_unit_ep_tasks", TASKS.format(name="published"))
    [(plugin, name)] = entry_point_plugins(only_tasks, "published")
    assert name == "published" and [t.name for t in plugin.tasks] == ["published"]
    both = module(
        "tf_unit_ep_both",
        TASKS.format(name="mixed")
        + "from taskframe.core import hookimpl\n\n"
        + "@hookimpl\ndef taskframe_configure():\n    pass\n",
    )
    assert [name for _, name in entry_point_plugins(both, "mixed")] == ["mixed", "mixed.tasks"]


def test_a_plugins_executor_with_bad_defaults_is_refused():
    from marshmallow import Schema

    from taskframe.core import Executor
    from taskframe.core.plugins import executor_problem

    def run(payload: dict, context: ExecutorContext) -> None:
        pass

    assert "bad defaults" in executor_problem(
        Executor("x", Schema(), run, defaults={"priority": 0})
    )
    assert "defaults may give" in executor_problem(
        Executor("x", Schema(), run, defaults={"delay": 1})
    )
    assert (
        executor_problem(Executor("x", Schema(), run, defaults={"queue": "q", "timeout": 3}))
        is None
    )
