"""The app's own CPU per request, called as WSGI in this process (no HTTP server).

Runs the taskframe installed in the interpreter that runs it, so an older
checkout's virtualenv runs this file too: a before/after that a busy machine
disturbs far less than anything timed across processes (CPU time of one
thread, best of three rounds)::

    OLD/.venv/bin/python bench/in_process.py
    .venv/bin/python bench/in_process.py

Prints CPU µs per ``POST /jobs``, per ``POST /lease`` answering 10 queued
no-op jobs, per ``GET /jobs/{id}`` of a finished job with a result, the
lease answer's JSON alone (10 leased rows to bytes, as the resource builds them),
and per job of W1's steady state: a ``POST /lease`` carrying 45 outcomes and
answering 45 jobs (the app's whole share of a no-op job, HTTP server aside).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floors import per_call  # noqa: E402

NOOP = {"type": "sleep", "payload": {"duration": 0}}


def environ(method: str, path: str, body: bytes = b"", query: str = "") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="calls per round (3 rounds)")
    opts = parser.parse_args(argv)

    from taskframe.core.plugins import load_plugins
    from taskframe.server.config import ServerConfig
    from taskframe.server.engine.completions import Completion
    from taskframe.server.engine.scheduler import Scheduler
    from taskframe.server.http.app import create_app
    from taskframe.server.http.http_io import dump_answer
    from taskframe.server.storage import open_store, representation

    workdir = Path(tempfile.mkdtemp(prefix="taskframe-inproc-"))
    store = open_store(f"sqlite:///{workdir}/app.db")
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    app = create_app(scheduler.config, scheduler, load_plugins())
    answered: list[str] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        answered.append(status)

    def call(method: str, path: str, body: bytes = b"", query: str = "") -> bytes:
        answered.clear()
        data = b"".join(app(environ(method, path, body, query), start_response))
        if not answered[0].startswith(("200", "201")):
            raise RuntimeError(f"{method} {path} answered {answered[0]}: {data[:200]!r}")
        return data

    rows: list[tuple[str, float]] = []
    try:
        body = json.dumps(NOOP).encode()
        rows.append(("POST /jobs", per_call(lambda: call("POST", "/jobs", body), opts.count)))

        for _ in range(opts.count * 3 * 10 // 1000 + 2):  # every lease below finds 10 jobs
            scheduler.submit([dict(NOOP, priority=5, max_attempts=3) for _ in range(1000)])
        lease = json.dumps({"worker_id": "bench", "types": ["sleep"], "max": 10}).encode()
        rows.append(
            ("POST /lease, 10 jobs", per_call(lambda: call("POST", "/lease", lease), opts.count))
        )

        leased = json.loads(call("POST", "/lease", lease))["jobs"]
        job = leased[0]
        scheduler.complete(
            [
                Completion(
                    job_id=job["id"],
                    lease_id=job["lease_id"],
                    status="succeeded",
                    worker_id="bench",
                    result={"slept": 0.0, "note": "done", "values": list(range(20))},
                    error=None,
                    retryable=True,
                )
            ]
        )
        path = f"/jobs/{job['id']}"
        rows.append(("GET /jobs/{id}", per_call(lambda: call("GET", path), opts.count)))

        rows_10 = scheduler.lease("bench", ["sleep"], 10, 0.0)
        shape = getattr(representation, "job_answer", None) or representation.job_json

        def lease_json() -> bytes:
            jobs = [shape(row, with_lease=True) for row in rows_10]
            return dump_answer({"jobs": jobs, "completions": [], "lease_ttl": 30.0})

        rows.append(("lease answer JSON alone, 10 rows", per_call(lease_json, opts.count * 4)))

        # W1's hot path: each POST /lease carries the outcomes of the jobs the previous
        # one answered (a worker's steady state), here 45 a request as in W1.
        size = 45
        rounds = max(20, opts.count // 10)
        for _ in range(3 * rounds * size // 1000 + 2):
            scheduler.submit([dict(NOOP, priority=5, max_attempts=3) for _ in range(1000)])
        done: list[dict[str, Any]] = []

        def cycle() -> None:
            request = {"worker_id": "bench", "types": ["sleep"], "max": size, "completions": done}
            # The standard library's json on this side: the same cost before and after.
            jobs = json.loads(call("POST", "/lease", json.dumps(request).encode()))["jobs"]
            done[:] = [
                {"job_id": j["id"], "lease_id": j["lease_id"], "status": "succeeded",
                 "result": {"slept": 0.0}}
                for j in jobs
            ]  # fmt: skip

        cycle()
        per_job = per_call(cycle, rounds) / size
        rows.append((f"W1 cycle: POST /lease, {size} done + {size} leased", per_job))
    finally:
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nin process, {sys.prefix}, CPU us per call (best of 3), {time.strftime('%H:%M')}")
    for what, value in rows:
        unit = "per job" if what.startswith("W1 cycle") else ""
        print(f"{what:44s} {value:10,.1f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
