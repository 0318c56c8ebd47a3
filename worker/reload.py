"""``taskframe-worker --reload``: restart the worker when a tasks module changes.

For development. This process never imports the tasks: it runs the worker
as a child process (the same command line without ``--reload``), watches
the folders of the ``--tasks`` modules with watchfiles, and on a change of a
``.py`` file stops the child gracefully (SIGTERM: running jobs get the
shutdown grace, unfinished ones are released) and starts a new one. A child
that cannot start (a syntax error in the module) is started again at the
next change. SIGTERM or SIGINT stops the child, then the supervisor.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

log = logging.getLogger("taskframe.worker")

#: Seconds between looks at the stop flag while watching.
WATCH_TICK = 0.5


def watched_paths(modules: Sequence[str]) -> list[Path]:
    """The folders holding the tasks modules (a package: its folder), without importing them."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    paths: set[Path] = set()
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a parent package that fails to import
            spec = None
        if spec is None or not spec.origin or not os.path.exists(spec.origin):
            # Not found (yet): watch where it would be, relative to the current folder.
            paths.add(Path(here))
            continue
        origin = Path(spec.origin).resolve()
        paths.add(origin.parent)
    return sorted(paths)


def without_reload(argv: Sequence[str]) -> list[str]:
    return [arg for arg in argv if arg != "--reload"]


def run_reloading(argv: Sequence[str], modules: Sequence[str]) -> int:
    """Run the worker in a child, restarting it when a watched file changes."""
    try:
        import watchfiles
    except ImportError:
        print(
            "taskframe-worker: error: --reload needs the watchfiles package "
            "(pip install 'taskframe[reload]')",
            file=sys.stderr,
        )
        return 2
    if not modules:
        print("taskframe-worker: error: --reload watches the --tasks modules: give --tasks")
        return 2
    paths = watched_paths(modules)
    command = [sys.executable, "-m", "taskframe.worker.cli", *without_reload(argv)]
    env = {**os.environ, "TASKFRAME_RELOAD": ""}  # the child must not supervise again
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("reloading: watching %s", ", ".join(str(p) for p in paths))
    child: subprocess.Popen[bytes] | None = subprocess.Popen(command, env=env)
    try:
        for changes in watchfiles.watch(
            *paths,
            watch_filter=watchfiles.PythonFilter(),
            stop_event=stop,
            rust_timeout=int(WATCH_TICK * 1000),
            yield_on_timeout=True,
        ):
            if child is not None and child.poll() is not None and not changes:
                if child.returncode == 0:  # stopped by itself (not by us): so do we
                    return 0
                log.error("the worker exited (code %s); waiting for a change", child.returncode)
                child = None
            if changes:
                names = ", ".join(sorted({Path(path).name for _, path in changes}))
                log.info("reloading: %s changed; restarting the worker", names)
                _stop(child)
                child = subprocess.Popen(command, env=env)
        return 0
    finally:
        _stop(child)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(child: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (a graceful stop), and wait for it; SIGKILL if it hangs past its grace."""
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
