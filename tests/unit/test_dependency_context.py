"""The worker hands the dependencies' results of the lease answer to the executor's context."""

from __future__ import annotations

import argparse

from marshmallow import Schema

from taskframe.core import Executor
from taskframe.worker.jobs import RunningJob, execute


def test_the_executor_reads_its_dependencies_results():
    seen = {}

    def run(payload, context):
        seen.update(context.dependency_results)
        return sum(result["n"] for result in context.dependency_results.values())

    executor = Executor("sum", Schema(), run)
    leased = {
        "id": 9,
        "type": "sum",
        "payload": {},
        "attempts": 1,
        "lease_id": "l",
        "dependencies": {"3": {"n": 1}, "4": {"n": 2}},
    }
    status, result, error, _ = execute(RunningJob(leased, executor, None), argparse.Namespace())
    assert (status, result, error) == ("succeeded", 3, None)
    assert seen == {3: {"n": 1}, 4: {"n": 2}}

    leased.pop("dependencies")
    status, result, _, _ = execute(RunningJob(leased, executor, None), argparse.Namespace())
    assert (status, result) == ("succeeded", 0)
