"""Integration tests: real ``taskframe-server`` and ``taskframe-worker`` processes.

Short settings keep them fast; nothing here asserts on speed, only on outcomes
(waits are generous because the machine may be busy).
"""

from __future__ import annotations

from tests.processes import SERVER_ARGS, WORKER_ARGS

__all__ = ["SERVER_ARGS", "WORKER_ARGS"]
