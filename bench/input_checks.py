"""What the input checks cost per request body (depth, NaN, lone surrogates).

Compares plain ``json.loads`` plus the quick loader without its text walks
(about what the server did before the checks) with ``strict_json.parse``, the
surrogate prefilter and the quick loader (what it does now), on the hot-path
bodies. Prints the best and median time of many interleaved rounds, so a busy
machine disturbs it less.

    .venv/bin/python bench/input_checks.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from taskframe.core import quick_load, strict_json

ONE = {"type": "sleep", "payload": {"duration": 0}, "priority": 5}
BATCH = {"jobs": [{"type": "sleep", "payload": {"duration": 0, "note": "x" * 20}}] * 1000}
LEASE = {
    "worker_id": "w1",
    "max": 500,
    "wait": 0.0,
    "types": ["sleep"],
    "completions": [
        {"job_id": i, "lease_id": f"abc-{i}", "status": "succeeded", "result": {"slept": 0}}
        for i in range(1, 501)
    ],
}


def measure(raw: bytes, load: Callable, rounds: int) -> tuple[float, float, float, float]:
    inner = 200 if len(raw) < 1000 else 1
    before, after = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(inner):
            load(json.loads(raw), text_checked=True)  # no walks: as before the checks
        t1 = time.perf_counter()
        for _ in range(inner):
            load(strict_json.parse(raw), text_checked=not strict_json.may_hold_surrogates(raw))
        t2 = time.perf_counter()
        before.append((t1 - t0) / inner)
        after.append((t2 - t1) / inner)
    before.sort()
    after.sort()
    mid = rounds // 2
    return before[0], before[mid], after[0], after[mid]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    cases = [
        ("POST /jobs (one job)", ONE, quick_load.quick_load_submit),
        ("POST /jobs/batch (1000 jobs)", BATCH, quick_load.quick_load_batch),
        ("POST /lease (500 completions)", LEASE, quick_load.quick_load_lease_request),
    ]
    print(f"{'body':32s} {'unchecked best/median':>24s} {'checked best/median':>24s}")
    for name, document, load in cases:
        raw = json.dumps(document).encode()
        b0, b1, a0, a1 = (t * 1e6 for t in measure(raw, load, args.rounds))
        print(f"{name:32s} {b0:10.1f} / {b1:8.1f} µs {a0:10.1f} / {a1:8.1f} µs")


if __name__ == "__main__":
    main()
