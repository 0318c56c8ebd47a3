"""Install the benchmark's executors (``bench/plugin``) for the processes it starts.

Writes a dist-info with a ``taskframe`` entry point into a folder and puts it
and ``bench/plugin`` on ``PYTHONPATH`` in this process's environment, which
the server and worker processes started afterwards inherit: they load the
plugin exactly as they would one installed with pip.
"""

from __future__ import annotations

import os
from pathlib import Path

from taskframe.testing.distributions import write_distribution

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"


def install(folder: Path) -> None:
    write_distribution(
        folder, "taskframe-bench-executors", {"bench_executors": "taskframe_bench_executors"}
    )
    paths = [str(folder), str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
