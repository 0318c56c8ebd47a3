"""The real taskframe app behind a real HTTP server, in this process, for unit tests.

``ApiServer`` is waitress (set up as ``taskframe-server`` sets it up) serving
in a thread on a free port; ``ApiServer.mount(db)`` puts a fresh app on it:
the real ``create_app`` over a real SQLite store and scheduler. A test module
keeps one server and mounts a new app (a new database) per test, so that the
client's HTTP calls go over real sockets without a process start per test.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import requests

from taskframe.core.plugins import PluginSet, load_plugins
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import create_app
from taskframe.server.http.serving import add_serving_options, create_server
from taskframe.server.storage import Store, open_store

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@cache
def default_plugins() -> PluginSet:
    """The installed plugins, loaded once: the app only reads them (executors, schemas)."""
    return load_plugins(disabled=[])


def migrated_copy(template: Path, target: Path) -> Path:
    """``target``: a copy of a migrated (and closed) SQLite file, ready to open."""
    shutil.copyfile(template, target)
    return target


def migrate_template(path: Path) -> Path:
    """A migrated SQLite database at ``path``, closed (WAL checkpointed) for copying."""
    store = open_store(str(path))
    try:
        store.migrate()
    finally:
        store.close()
    leftovers = [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    assert not leftovers or all(p.stat().st_size == 0 for p in leftovers), leftovers
    return path


@dataclass
class Mounted:
    """One app on the server: its URL, store and scheduler, and the requests it got."""

    url: str
    store: Store
    scheduler: Scheduler
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query)

    def paths(self, method: str = "GET") -> list[str]:
        """The paths (with their query) of the requests made with ``method``, in order."""
        return [path for made, path in self.requests if made == method]

    def close(self) -> None:
        self.scheduler.notifier.close()  # long polls answer now
        self.store.close()


class ApiServer:
    """waitress on 127.0.0.1 and a free port, serving whichever app is mounted."""

    def __init__(self, threads: int = 8) -> None:
        # taskframe-server's own serving defaults, on a free port of 127.0.0.1.
        parser = argparse.ArgumentParser()
        add_serving_options(parser)
        options = parser.parse_args([])
        options.host, options.port, options.threads = "127.0.0.1", 0, threads
        self._mounted: Mounted | None = None
        self._app: WSGIApp | None = None
        self.server = create_server(self._dispatch, ServerConfig(), options)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="api-server", daemon=True)
        self._thread.start()

    def mount(
        self,
        db: Path,
        config: ServerConfig | None = None,
        plugins: PluginSet | None = None,
        access: AccessConfig | None = None,
    ) -> Mounted:
        """A fresh app over the (migrated) SQLite file ``db``; the previous one is closed."""
        self.unmount()
        config = config or ServerConfig()
        store = open_store(str(db))
        store.migrate()  # a no-op on a migrated copy
        scheduler = Scheduler(store, config)
        self._app = create_app(config, scheduler, plugins or default_plugins(), access)
        self._mounted = Mounted(self.url, store, scheduler)
        return self._mounted

    def unmount(self) -> None:
        mounted, self._mounted, self._app = self._mounted, None, None
        if mounted is not None:
            mounted.close()

    def close(self) -> None:
        self.unmount()
        self._stopping = True
        self.server.pull_trigger()  # wake the loop, which then sees _stopping
        self._thread.join(timeout=10)
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.close()
        for channel in list(self.server._map.values()):
            channel.close()

    def _serve(self) -> None:
        # waitress's run() polls for a second at a time; one pass at a time, woken
        # by the trigger, lets close() end the loop at once.
        while not self._stopping:
            self.server.asyncore.loop(timeout=1.0, map=self.server._map, count=1)

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        app, mounted = self._app, self._mounted
        if app is None or mounted is None:
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"title": "Service Unavailable", "description": "no app mounted"}']
        query = environ.get("QUERY_STRING")
        path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
        mounted.requests.append((environ["REQUEST_METHOD"], path))
        return app(environ, start_response)


def lease_as_worker(
    url: str, worker_id: str = "w1", types: tuple[str, ...] = ("sleep",)
) -> dict[str, Any]:
    """Lease the next ready job over HTTP as a worker would (``POST /lease``); return it."""
    answer = requests.post(
        f"{url}/lease",
        json={"worker_id": worker_id, "types": list(types), "max": 1, "host": "test-host"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    jobs = answer.json()["jobs"]
    assert jobs, f"no ready job of {types} to lease"
    return jobs[0]


def run_as_worker(
    url: str,
    status: str = "succeeded",
    *,
    result: Any = None,
    error: str | None = None,
    log: str | None = None,
    traceback: str | None = None,
    worker_id: str = "w1",
    types: tuple[str, ...] = ("sleep",),
) -> dict[str, Any]:
    """Lease the next ready job as a worker would, and report ``status`` for it.

    Returns the leased job (the test asserts which one it was).
    """
    job = lease_as_worker(url, worker_id, types)
    outcome = {"worker_id": worker_id, "lease_id": job["lease_id"], "status": status}
    outcome.update(result=result, error=error, log=log)
    if traceback is not None:
        outcome["traceback"] = traceback
    answer = requests.post(f"{url}/jobs/{job['id']}/complete", json=outcome, timeout=10)
    assert answer.status_code == 200, answer.text
    return job
