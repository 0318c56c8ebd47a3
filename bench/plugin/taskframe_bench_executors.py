"""Benchmark-only executors, installed at run time by ``bench/bench_plugin.py``.

- ``pysha256``: SHA-256 over ``size`` bytes in pure Python (a Python loop, held
  by the GIL: the CPU-bound job of ``bench/cpu_pool.py``).
- ``redis_mark``: one ``INCR`` + ``SETBIT`` on Redis in one pipelined round
  trip (the task body of ``bench/compare.py``, the same as Huey's and Celery's).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

from taskframe.core import Executor, ExecutorContext, hookimpl

_K = [
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
]  # fmt: skip
_M = 0xFFFFFFFF


def sha256_py(data: bytes) -> str:
    """SHA-256 in pure Python (slow on purpose: a CPU-bound, GIL-bound job)."""
    h = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
         0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]  # fmt: skip
    length = len(data)
    data += b"\x80" + b"\x00" * ((55 - length) % 64) + (length * 8).to_bytes(8, "big")
    for offset in range(0, len(data), 64):
        w = [int.from_bytes(data[offset + 4 * i : offset + 4 * i + 4], "big") for i in range(16)]
        for i in range(16, 64):
            x, y = w[i - 15], w[i - 2]
            s0 = ((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)
            s1 = ((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)
            w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M)
        a, b, c, d, e, f, g, hh = h
        for i in range(64):
            s1 = ((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))
            t1 = (hh + (s1 & _M) + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & _M
            s0 = ((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))
            t2 = ((s0 & _M) + ((a & b) ^ (a & c) ^ (b & c))) & _M
            hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M, c, b, a, (t1 + t2) & _M
        h = [(x + y) & _M for x, y in zip(h, (a, b, c, d, e, f, g, hh), strict=True)]
    return "".join(f"{x:08x}" for x in h)


class ShaSchema(Schema):
    size = fields.Integer(required=True, validate=validate.Range(min=0, max=64 << 20))


def pysha256(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    """The digest, the pid that ran it, and the CPU seconds this thread spent on it."""
    cpu = time.thread_time()
    digest = sha256_py(bytes(payload["size"]))
    return {"sha256": digest, "pid": os.getpid(), "cpu": time.thread_time() - cpu}


class MarkSchema(Schema):
    n = fields.Integer(required=True, validate=validate.Range(min=0))
    key = fields.String(required=True)
    sleep = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=60))


_local = threading.local()  # one Redis connection per job thread (or per job process)


def redis_mark(payload: dict[str, Any], context: ExecutorContext) -> None:
    """As ``bench/peers/mark.py`` (time.sleep, like the peers' task, then one round trip)."""
    if payload["sleep"]:
        time.sleep(payload["sleep"])
    client = getattr(_local, "client", None)
    if client is None:
        import redis  # the bench extra

        url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        client = _local.client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    pipe.incr(payload["key"] + ":count")
    pipe.setbit(payload["key"] + ":bits", payload["n"], 1)
    pipe.execute()


@hookimpl
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    register(Executor(name="pysha256", schema=ShaSchema(), run=pysha256, description="CPU"))
    register(Executor(name="redis_mark", schema=MarkSchema(), run=redis_mark, description="I/O"))
