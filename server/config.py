"""Server settings, built from the command line (or directly in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskframe.core.retry import BackoffPolicy

if TYPE_CHECKING:
    from taskframe.server.auth import TokenSet
    from taskframe.server.origin import AllowedHosts


@dataclass(frozen=True)
class ServerConfig:
    lease_ttl: float = 30.0
    """Seconds a lease lives without a heartbeat before the attempt is reaped."""
    default_timeout: float | None = 300.0
    """Seconds one attempt may run when the job does not say (None: no limit)."""
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    max_body_bytes: int = 1 << 20
    """Largest request body accepted (``POST /jobs/batch``: 16 times this)."""
    reap_interval: float = 1.0
    retention: float = 7 * 86400.0
    """Seconds finished jobs are kept before pruning (0 keeps them forever)."""
    prune_batch: int = 500
    max_waiting: int = 8
    """Requests that may long-poll at once (lease and job waits); 0: none may wait."""
    busy_retry_after: float = 5.0
    """Seconds a request refused a wait is told to pause (jittered ½–1½×)."""
    max_result_bytes: int = 1 << 20
    """Largest stored result (its JSON text); past it the attempt fails, not retried."""
    max_answer_bytes: int = 16 << 20
    """Largest listing answer: a page of full jobs stops short of it (the cursor goes on)."""
    promote_batch: int = 1000
    """Scheduled jobs made ready per transaction by the housekeeper."""
    max_schedules: int = 1000
    """Schedules the database may hold (POST /schedules past it: 409)."""
    cascade_batch: int = 500
    """Dependants resolved per transaction when a job finishes (the rest: the housekeeper)."""
    worker_window: float | None = None
    """Seconds a worker counts as alive after it was last seen (None: 3 lease TTLs)."""
    access_log: bool = False
    """Log every request at INFO (otherwise at DEBUG)."""
    tokens: TokenSet | None = field(default=None, compare=False, repr=False)
    """Bearer tokens with roles; None or empty: every endpoint is open."""
    allowed_hosts: AllowedHosts | None = field(default=None, compare=False, repr=False)
    """Without tokens, the ``Host`` names answered (IP addresses always are); None: any."""
    max_auth_failures: int = 20
    """Bad tokens one client address may send per minute before it gets 429 (0: no limit)."""

    @property
    def worker_alive_window(self) -> float:
        return self.worker_window or 3 * self.lease_ttl
