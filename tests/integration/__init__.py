"""Integration tests: real ``taskframe-server`` and ``taskframe-worker`` processes.

Short settings keep them fast; nothing here asserts on speed, only on outcomes
(waits are generous because the machine may be busy).
"""

from __future__ import annotations

#: A server that reaps quickly and retries almost at once.
SERVER_ARGS = (
    "--lease-ttl", "2",
    "--reap-interval", "0.2",
    "--retry-backoff", "0.1",
    "--retry-backoff-max", "0.5",
)  # fmt: skip

#: A worker that notices cancellations and signals quickly.
WORKER_ARGS = (
    "--poll-interval", "1",
    "--heartbeat-interval", "0.3",
    "--shutdown-grace", "2",
)  # fmt: skip
