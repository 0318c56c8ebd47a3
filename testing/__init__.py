"""taskframe.testing: run tasks and plugins' jobs in tests.

``run_task(add, x=1)`` runs a task in this process the way a worker would
(see :mod:`taskframe.testing.tasks`). The pytest fixtures (loaded through the
``pytest11`` entry point, :mod:`taskframe.testing.fixtures`) start real
taskframe processes; see the docs: tutorials/plugin.md and getting-started/first-task.md.
"""

from __future__ import annotations

from taskframe.testing.processes import FINISHED, TaskframeServer, TaskframeWorker, free_port
from taskframe.testing.tasks import AttemptRun, TaskRun, run_job, run_task

__all__ = [
    "FINISHED",
    "AttemptRun",
    "TaskRun",
    "TaskframeServer",
    "TaskframeWorker",
    "free_port",
    "run_job",
    "run_task",
]
