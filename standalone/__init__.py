"""``taskframe-server``, the command: the server, and with ``--standalone`` a worker in the
same process.

The one module above both the server and the worker: it starts both, and neither imports
it or the other (tests/unit/test_layers.py). The worker still speaks HTTP to its own
server, so the invariants hold unchanged; its options are parsed (and shown by
``--help``) only when ``--standalone`` is given. The worker's modules are imported only
then: a plain server does not load them.
"""

from __future__ import annotations

import argparse
import secrets
import threading
from collections.abc import Callable

from taskframe.core.plugins import PluginSet
from taskframe.server import cli as server_cli
from taskframe.server.cli import Serving, SignalHandler
from taskframe.server.http.auth import CLIENT, WORKER, Principal, TokenSet


class InProcessWorker:
    """What ``--standalone`` runs beside the server (see :class:`server_cli.InProcessWorker`)."""

    def add_options(self, parser: argparse.ArgumentParser, plugins: PluginSet) -> None:
        """The worker's options (its group is titled "worker"), and the plugins' worker options."""
        from taskframe.worker.cli import add_worker_options

        add_worker_options(parser, plugins, api_url=False, log_level=False)

    def run(
        self,
        server: Serving,
        host: str,
        port: int,
        plugins: PluginSet,
        options: argparse.Namespace,
        tokens: TokenSet | None,
        on_stop_signals: Callable[[SignalHandler], None],
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
            principal = Principal(frozenset({WORKER}), (worker_id,), "the standalone worker")
            tokens.add(token, principal)
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


def main(argv: list[str] | None = None) -> int:
    """``taskframe-server``: the server's command, able to run a worker (``--standalone``)."""
    return server_cli.main(argv, InProcessWorker())


__all__ = ["InProcessWorker", "main"]
