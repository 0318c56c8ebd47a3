"""The client a running job submits follow-up jobs with (``current_job().client``).

It speaks for the worker, to the worker's servers, with the worker's
``--client-token`` (``TASKFRAME_CLIENT_TOKEN``) or else the worker's own
token. With tokens configured, submitting needs the ``client`` role: give the
worker a second token with that role, or one token with both
(``client,worker:...``). One client per process, shared by its jobs.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from typing import Any

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()
#: By id() of an options object: it (kept alive, so the id stays its) and its factory.
_factories: dict[int, tuple[argparse.Namespace, Callable[[], Any] | None]] = {}


def client_factory(options: argparse.Namespace) -> Callable[[], Any] | None:
    """A function giving the shared client of these options; None without server URLs.

    Made once per options object (every job of a worker asks).
    """
    made = _factories.get(id(options))
    if made is not None and made[0] is options:
        return made[1]
    factory = _factory(options)
    with _lock:
        if len(_factories) >= 64:  # many short-lived options (taskframe.testing's)
            _factories.clear()
        _factories[id(options)] = (options, factory)
    return factory


def _factory(options: argparse.Namespace) -> Callable[[], Any] | None:
    given = getattr(options, "follow_up_client", None)  # taskframe.testing.run_job's
    if given is not None:
        return lambda: given
    urls = getattr(options, "api_url", None)
    if not urls:
        return None
    token = getattr(options, "client_token", None) or getattr(options, "token", None)
    key = (urls, token, getattr(options, "ca_cert", None))

    def make() -> Any:
        with _lock:
            client = _clients.get(key)
            if client is None:
                from taskframe.client import Client

                client = _clients[key] = Client(urls, token=token, ca_cert=key[2])
            return client

    return make
