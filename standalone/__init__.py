"""``taskframe-server --standalone``: a server that also runs a worker in-process.

The one place the server knows the worker. The worker still speaks HTTP to
its own server, so the invariants hold unchanged; its options are parsed
(and shown by ``--help``) only when ``--standalone`` is given.
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

from taskframe.core.options import env_name
from taskframe.core.plugins import PluginSet
from taskframe.server.http.auth import CLIENT, WORKER, Principal, TokenSet

_TRUE = {"1", "true", "yes", "on"}


def standalone_requested(argv: Sequence[str]) -> bool:
    """``--standalone`` on the command line or ``TASKFRAME_STANDALONE`` set true."""
    if "--standalone" in argv:
        return True
    return os.environ.get(env_name("--standalone"), "").strip().lower() in _TRUE


def add_standalone_options(parser: argparse.ArgumentParser, plugins: PluginSet) -> None:
    """The worker's options (its group is titled "worker"), and the plugins' worker options."""
    from taskframe.worker.cli import add_worker_options

    add_worker_options(parser, plugins, api_url=False, log_level=False)


def run_standalone(
    server: Any,
    host: str,
    port: int,
    plugins: PluginSet,
    options: argparse.Namespace,
    tokens: TokenSet | None,
    on_stop_signals: Callable[[Any], None],
    shut_down: Callable[[], None],
) -> int:
    """Serve in a thread; run a worker in the main thread against our own port."""
    from taskframe.worker.cli import default_worker_id
    from taskframe.worker.config import WorkerConfig
    from taskframe.worker.loop import Worker

    serving = threading.Thread(target=server.run, name="waitress", daemon=True)
    serving.start()
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    worker_id = options.worker_id or default_worker_id()
    url = f"http://{host}:{port}"
    # Where jobs submit follow-up jobs (current_job().client); the http executor refuses it.
    options.api_url = url
    if tokens:
        # The in-process worker gets a token of its own, bound to its id, never written out.
        token = secrets.token_urlsafe(32)
        tokens.add(token, Principal(frozenset({WORKER}), (worker_id,), "the standalone worker"))
        options.token = token
        # Its jobs' follow-up client gets one with the client role (submit, read).
        client_token = secrets.token_urlsafe(32)
        tokens.add(client_token, Principal(frozenset({CLIENT}), None, "the standalone jobs"))
        options.client_token = client_token
    config = WorkerConfig.from_options(options, [url], worker_id)
    worker = Worker(config, plugins)

    def on_signal(signum: int, frame: object) -> None:
        worker.stop()
        worker.interrupt_idle_poll()

    on_stop_signals(on_signal)
    try:
        worker.run()
    finally:
        shut_down()
    return 0


__all__ = ["add_standalone_options", "run_standalone", "standalone_requested"]
