"""taskframe.worker: lease jobs over HTTP and run them with executor plugins.

Talks to servers over the client's transport (``taskframe.client.transport``);
never imports the server or opens a database. Embedders (the standalone
server) build a :class:`WorkerConfig` and run a :class:`Worker`; the
command line's options come from :func:`add_worker_options`.
"""

from __future__ import annotations

from taskframe.worker.cli import add_worker_options
from taskframe.worker.client import ApiClient, ApiError, Unavailable
from taskframe.worker.config import WorkerConfig
from taskframe.worker.loop import Worker

__all__ = ["ApiClient", "ApiError", "Unavailable", "Worker", "WorkerConfig", "add_worker_options"]
