"""A real installed plugin distribution for tests: a dist-info with an entry point.

``install(folder)`` writes the distribution's metadata into ``folder`` and
returns a ``PYTHONPATH`` value under which ``taskframe-server`` and
``taskframe-worker`` (and the worker's job processes) load it like any
plugin installed with pip.
"""

from __future__ import annotations

import os
from pathlib import Path

from taskframe.testing.distributions import write_distribution

HERE = Path(__file__).parent


def install(folder: Path) -> str:
    write_distribution(
        folder, "taskframe-test-executors", {"test_executors": "taskframe_test_executors"}
    )
    paths = [str(folder), str(HERE), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in paths if p)
