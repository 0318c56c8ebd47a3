"""taskframe.worker: lease jobs over HTTP and run them with executor plugins.

Talks to servers over the client's transport (``taskframe.client.transport``);
never imports the server or opens a database. Embedders (the standalone
server) use :class:`Worker` and :func:`add_worker_options`.
"""

from __future__ import annotations

from taskframe.worker.cli import add_worker_options
from taskframe.worker.client import ApiClient, ApiError, Unavailable
from taskframe.worker.loop import Worker

__all__ = ["ApiClient", "ApiError", "Unavailable", "Worker", "add_worker_options"]
