"""Install the benchmark's executors (``bench/plugin``) for the processes it starts.

Writes a dist-info with a ``taskframe`` entry point into a folder and puts it
and ``bench/plugin`` on ``PYTHONPATH`` in this process's environment, which
the server and worker processes started afterwards inherit: they load the
plugin exactly as they would one installed with pip.
"""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"


def install(folder: Path) -> None:
    dist_info = folder / "taskframe_bench_executors-0.1.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: taskframe-bench-executors\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[taskframe]\nbench_executors = taskframe_bench_executors\n"
    )
    paths = [str(folder), str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
