"""Benchmark real ``taskframe-server`` and ``taskframe-worker`` processes.

Each workload gets a fresh database (a SQLite file in a temporary folder, or a
new schema in the given PostgreSQL database, dropped afterwards) and a fresh
server on a free port; every job is checked to have succeeded in one attempt.

    .venv/bin/python bench/bench.py [--db sqlite|postgresql://...]
        [--workloads W1,SUBMIT,W2,W3] [--jobs N] [--json out.json] [--million]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from harness import BenchError, Env, kill_all, new_workdir  # noqa: E402
from workloads import WORKLOADS, Result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--workloads", default="W1,SUBMIT,W2,W3", help="comma-separated")
    parser.add_argument("--jobs", type=int, default=5000, help="W1 job count")
    parser.add_argument("--w1-concurrency", type=int, default=64, help="slots per W1 worker")
    parser.add_argument("--w2-jobs", type=int, default=300, help="measured W2 round trips")
    parser.add_argument("--submit-seconds", type=float, default=10.0, help="SUBMIT duration")
    parser.add_argument("--no-wrk", action="store_true", help="SUBMIT with Python threads")
    parser.add_argument("--million", action="store_true", help="also run the 1M-job test")
    parser.add_argument("--million-jobs", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--million-timeout", type=float, default=4 * 3600.0)
    parser.add_argument("--server-args", default="", help="extra taskframe-server flags")
    parser.add_argument("--worker-args", default="", help="extra taskframe-worker flags")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep databases and logs")
    opts = parser.parse_args(argv)
    opts.names = [name.strip().upper() for name in opts.workloads.split(",") if name.strip()]
    opts.names += ["MILLION"] if opts.million and "MILLION" not in opts.names else []
    unknown = set(opts.names) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    if opts.db != "sqlite" and not opts.db.startswith(("postgresql://", "postgres://")):
        parser.error("--db must be sqlite or a postgresql:// URL")
    return opts


def _run(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(opts: argparse.Namespace) -> dict[str, Any]:
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _run("git", "rev-parse", "--short", "HEAD").strip(),
        "git_dirty_files": len(_run("git", "status", "--porcelain").splitlines()),
        "db_backend": "sqlite" if opts.db == "sqlite" else "postgresql",
        "wrk": _run("wrk", "-v").split("\n")[0].strip() if shutil.which("wrk") else None,
        "options": {k: v for k, v in vars(opts).items() if k not in ("json", "db")},
    }
    if opts.db != "sqlite":
        import psycopg

        with psycopg.connect(opts.db) as conn:
            info["db_version"] = conn.execute("SHOW server_version").fetchone()[0]
    return info


def run_workload(name: str, opts: argparse.Namespace, workdir: Path, envs: list[Env]) -> Result:
    out = Result(name)
    env = None
    started = time.monotonic()
    print(f"running {name} ...", flush=True)
    try:
        env = Env(
            opts.db,
            workdir,
            name,
            shlex.split(opts.server_args),
            shlex.split(opts.worker_args),
        )
        envs.append(env)
        WORKLOADS[name](env, opts, out)
        env.check_alive()
    except (BenchError, requests.RequestException, HTTPException, OSError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug here or an unexpected answer: keep going
        traceback.print_exc()
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        if env is not None:
            rss = env.close()
            out.add(f"{name} peak RSS", "server MB", rss["server_peak_rss_mb"])
            if rss["worker_peak_rss_mb"] != "no worker":
                out.add(f"{name} peak RSS", "worker MB (max)", rss["worker_peak_rss_mb"])
            out.notes.extend(env.notes)
    out.extra["wall_seconds"] = round(time.monotonic() - started, 1)
    print(f"  {name}: {'FAILED: ' + out.error if out.error else 'ok'}", flush=True)
    return out


def print_table(results: list[Result]) -> None:
    rows = [("workload", "figure", "value")]
    for result in results:
        rows += [(f["workload"], f["figure"], str(f["value"])) for f in result.figures]
        if result.error:
            rows.append((result.name, "FAILED", result.error[:200]))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    print()
    for row in rows:
        print(f"{row[0]:<{widths[0] + 2}}{row[1]:<{widths[1] + 2}}{row[2]}")
    notes = [note for result in results for note in result.notes]
    if notes:
        print("\nnotes (log lines that look like errors, slow exits, ...):")
        for note in notes:
            print(f"  - {note}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    info = machine_info(opts)
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    started = time.monotonic()
    results = [run_workload(name, opts, workdir, envs) for name in opts.names]
    info["wall_seconds"] = round(time.monotonic() - started, 1)
    print_table(results)
    print(f"\n{info['db_backend']}, {info['nproc']} cores, total {info['wall_seconds']} s")
    if opts.json:
        flat = {f"{f['workload']} | {f['figure']}": f["value"] for r in results for f in r.figures}
        document = {
            "machine": info,
            "figures": flat,
            "workloads": {r.name: vars(r) for r in results},
        }
        opts.json.write_text(json.dumps(document, indent=2))
        print(f"wrote {opts.json}")
    failed = [r.name for r in results if r.error]
    if failed or opts.keep:
        print(f"logs and databases kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
