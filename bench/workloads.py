"""The benchmark workloads: each runs against a fresh ``Env`` and records figures."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from harness import NOOP, BenchError, Deadline, Env, job_clock, proc_kb, verify_succeeded


@dataclass
class Result:
    name: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def add(self, workload: str, figure: str, value: float | str) -> None:
        if isinstance(value, float):
            value = round(value, 3 if value < 10 else 1)
        self.figures.append({"workload": workload, "figure": figure, "value": value})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def w1(env: Env, opts: argparse.Namespace, out: Result) -> None:
    """N no-op jobs submitted one by one, then run by 2 workers."""
    n, c = opts.jobs, opts.w1_concurrency
    base = env.api.newest_id()
    deadline = Deadline(60 + n / 20, f"submitting {n} jobs")
    start = perf_counter()
    ids = set()
    for index in range(n):
        ids.add(env.api.submit())
        if index % 200 == 0:
            deadline.check()
    out.add("W1 enqueue (1 client)", "jobs/s", n / (perf_counter() - start))
    start = perf_counter()
    env.start_workers(2, c)
    end = env.api.wait_idle(env, timeout=60 + n / 10)
    jobs = verify_succeeded(env.api, base, ids)
    label = f"W1 run (2 workers, C={c})"
    out.add(label, "jobs/s", n / (end - start))
    out.add(label, "seconds from worker start", end - start)
    out.add(label, "jobs/s (job clock)", n / job_clock(jobs))
    out.add(label, "verified", f"{n}/{n} succeeded, 1 attempt")


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) created = 0; other = 0 end
function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local c, o = 0, 0
  for _, t in ipairs(threads) do c = c + t:get("created"); o = o + t:get("other") end
  local e = summary.errors
  io.write(string.format(
    "BENCH created=%%d other=%%d seconds=%%f socket_errors=%%d p50_ms=%%f p99_ms=%%f\\n",
    c, o, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _wrk(env: Env, seconds: float, conns: int) -> dict[str, float]:
    script = env.workdir / "post_job.lua"
    script.write_text(WRK_SCRIPT % json.dumps(NOOP))
    args = ["wrk", "-t2", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script)]
    run = subprocess.run(
        [*args, env.url + "/jobs"], capture_output=True, text=True, timeout=seconds + 60
    )
    match = re.search(r"^BENCH (.*)$", run.stdout, re.M)
    if run.returncode != 0 or not match:
        raise BenchError(f"wrk failed ({run.returncode}): {run.stdout[-500:]} {run.stderr[-500:]}")
    return {k: float(v) for k, v in (pair.split("=") for pair in match.group(1).split())}


def _python_flood(env: Env, seconds: float, conns: int) -> dict[str, float]:
    """Fallback for wrk: ``conns`` threads, each one keep-alive http.client connection."""
    counts = [{"created": 0, "other": 0, "socket_errors": 0} for _ in range(conns)]
    body = json.dumps(NOOP).encode()
    stop_at = time.monotonic() + seconds

    def run(mine: dict[str, int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=30)
        while time.monotonic() < stop_at:
            try:
                conn.request("POST", "/jobs", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                mine["created" if resp.status == 201 else "other"] += 1
            except (OSError, http.client.HTTPException):
                mine["socket_errors"] += 1
                conn.close()
        conn.close()

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in counts]
    start = perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    if any(thread.is_alive() for thread in threads):
        raise BenchError("a POST /jobs client thread hung")
    total = {key: float(sum(c[key] for c in counts)) for key in counts[0]}
    return {**total, "seconds": perf_counter() - start}


def submit(env: Env, opts: argparse.Namespace, out: Result) -> None:
    """POST /jobs capacity under 8 connections, then POST /jobs/batch from one client."""
    conns, seconds = 8, opts.submit_seconds
    base = env.api.newest_id()
    use_wrk = shutil.which("wrk") is not None and not opts.no_wrk
    stats = (_wrk if use_wrk else _python_flood)(env, seconds, conns)
    client = "wrk -t2" if use_wrk else "python threads"
    label = f"SUBMIT POST /jobs ({client}, {conns} conn)"
    out.add(label, "POST/s (201s)", stats["created"] / stats["seconds"])
    if "p50_ms" in stats:
        out.add(label, "p50 / p99 ms", f"{stats['p50_ms']:.1f} / {stats['p99_ms']:.1f}")
    out.extra["post_client"] = stats
    if stats["other"] or stats["socket_errors"]:
        raise BenchError(
            f"POST /jobs: {stats['other']:.0f} non-201 answers, "
            f"{stats['socket_errors']:.0f} socket errors/timeouts"
        )
    batches, size = 50, 1000
    deadline = Deadline(300, "POST /jobs/batch")
    start = perf_counter()
    for _ in range(batches):
        env.api.batch([NOOP] * size)
        deadline.check()
    out.add(
        f"SUBMIT POST /jobs/batch ({size}/request)",
        "jobs/s",
        batches * size / (perf_counter() - start),
    )
    acked = int(stats["created"]) + batches * size
    jobs = list(env.api.jobs_after(base, timeout=600))
    extra = len(jobs) - acked
    not_queued = sum(job["status"] != "queued" for job in jobs)
    if not_queued or extra < 0 or extra > (conns if use_wrk else 0):
        raise BenchError(f"server holds {len(jobs)} jobs ({not_queued} not queued), acked {acked}")
    if extra:
        out.notes.append(f"SUBMIT: {extra} POSTs in flight when wrk stopped were committed")
    out.add("SUBMIT", "verified", f"server holds {len(jobs)}, acked {acked}")


class HttpClient:
    """One keep-alive http.client connection: measures the server, not ``requests``."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, data, headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())


def _round_trip(env: Env, client: HttpClient | None) -> float:
    """Submit one no-op job and wait for it with ``?wait=30``; seconds, client clock."""
    start = perf_counter()
    if client:
        status, job = client.call("POST", "/jobs", NOOP)
        if status != 201:
            raise BenchError(f"POST /jobs: {status} {job}")
        status, job = client.call("GET", f"/jobs/{job['id']}?wait=30")
        if status != 200:
            raise BenchError(f"GET /jobs/id?wait=30: {status} {job}")
    else:
        job_id = env.api.submit()
        job = env.api.call("GET", f"/jobs/{job_id}", params={"wait": 30})
    elapsed = perf_counter() - start
    if job["status"] != "succeeded" or job["attempts"] != 1:
        env.check_alive()  # a dead worker is the better explanation
        raise BenchError(f"job {job['id']} is {job['status']} after {job['attempts']} attempt(s)")
    return elapsed


def w2(env: Env, opts: argparse.Namespace, out: Result) -> None:
    """Latency submit → done with one idle worker of one slot."""
    env.start_workers(1, 1)
    client = HttpClient(env.port)
    base = env.api.newest_id()
    deadline = Deadline(600, "W2 round trips")
    for _ in range(20):  # warm-up, also waits out the worker's start
        _round_trip(env, client)
    for name, used in (("http.client", client), ("requests", None)):
        samples = []
        for _ in range(opts.w2_jobs):
            samples.append(_round_trip(env, used) * 1000)
            deadline.check()
        label = f"W2 submit->done ({name})"
        for p in (50, 90, 99):
            out.add(label, f"p{p} ms", percentile(samples, p))
        out.add(label, "max ms", max(samples))
        out.extra[f"latency_ms_{name}"] = [round(s, 3) for s in samples]
    total = 20 + 2 * opts.w2_jobs
    jobs = list(env.api.jobs_after(base))
    if len(jobs) != total or any(j["status"] != "succeeded" or j["attempts"] != 1 for j in jobs):
        raise BenchError(f"W2: expected {total} jobs succeeded in 1 attempt, got {len(jobs)}")
    out.add("W2", "verified", f"{total}/{total} succeeded, 1 attempt")


def w3(env: Env, opts: argparse.Namespace, out: Result) -> None:
    """200 jobs of 0.5 s on one worker with 50 slots: makespan (ideal 2.0 s)."""
    env.start_workers(1, 50)
    _round_trip(env, HttpClient(env.port))  # the worker is up and idle
    base = env.api.newest_id()
    jobs_spec = [{"type": "sleep", "payload": {"duration": 0.5}}] * 200
    start = perf_counter()
    ids = set(env.api.batch(jobs_spec))
    end = env.api.wait_idle(env, timeout=120)
    jobs = verify_succeeded(env.api, base, ids)
    label = "W3 makespan (200 x 0.5 s, C=50)"
    out.add(label, "seconds (ideal 2.0)", end - start)
    out.add(label, "seconds (job clock)", job_clock(jobs, "created_at"))
    out.add(label, "verified", "200/200 succeeded, 1 attempt")


def million(env: Env, opts: argparse.Namespace, out: Result) -> None:
    """1,000,000 jobs in batches of 1000 while 2 workers run them: RSS and latency flatness."""
    total, size, every = opts.million_jobs, 1000, 50_000
    base = env.api.newest_id()
    env.start_workers(2, opts.w1_concurrency)
    client = HttpClient(env.port)
    samples: list[dict[str, Any]] = []
    deadline = Deadline(opts.million_timeout, "the million-job run")
    ids: set[int] = set()
    batched = 0
    start = perf_counter()
    while batched < total:
        count = min(size, total - batched)
        ids.update(env.api.batch([NOOP] * count))
        batched += count
        if batched % every == 0 or batched == total:
            t = perf_counter()
            status, job = client.call("POST", "/jobs", NOOP)
            post_ms = (perf_counter() - t) * 1000
            t = perf_counter()
            client.call("GET", f"/jobs/{job['id']}")
            get_ms = (perf_counter() - t) * 1000
            ids.add(job["id"])
            rss = (proc_kb(env.server.popen.pid, "VmRSS") or 0) / 1024
            sample = {"submitted": len(ids), "s": round(perf_counter() - start, 1)}
            samples.append(
                {**sample, "rss_mb": round(rss, 1), "post_ms": post_ms, "get_ms": get_ms}
            )
            print(f"  million: {samples[-1]}", flush=True)
        env.check_alive()
        deadline.check()
    end = env.api.wait_idle(env, timeout=max(1.0, deadline.end - time.monotonic()), interval=1)
    verify_succeeded(env.api, base, ids)
    peak = (proc_kb(env.server.popen.pid, "VmHWM") or 0) / 1024
    out.add(f"MILLION ({len(ids)} jobs, 2 workers)", "jobs/s end to end", len(ids) / (end - start))
    out.add("MILLION", "server peak RSS MB", peak)
    out.add("MILLION", "POST /jobs ms first / last / max", _spread(samples, "post_ms"))
    out.add("MILLION", "GET /jobs/{id} ms first / last / max", _spread(samples, "get_ms"))
    out.extra["samples"] = samples


def _spread(samples: list[dict[str, Any]], key: str) -> str:
    values = [s[key] for s in samples]
    return f"{values[0]:.1f} / {values[-1]:.1f} / {max(values):.1f}"


WORKLOADS = {"W1": w1, "SUBMIT": submit, "W2": w2, "W3": w3, "MILLION": million}
