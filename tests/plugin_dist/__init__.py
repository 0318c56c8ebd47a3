"""A real installed plugin distribution for tests: a dist-info with an entry point.

``install(folder)`` writes the distribution's metadata into ``folder`` and
returns a ``PYTHONPATH`` value under which ``taskframe-server`` and
``taskframe-worker`` (and the worker's job processes) load it like any
plugin installed with pip.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent


def install(folder: Path) -> str:
    dist_info = folder / "taskframe_test_executors-0.1.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: taskframe-test-executors\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[taskframe]\ntest_executors = taskframe_test_executors\n"
    )
    paths = [str(folder), str(HERE), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in paths if p)
