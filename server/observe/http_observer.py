"""A Falcon middleware: counts every request, warns of each 5xx, logs access lines."""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any

import falcon

from taskframe.server.observe.metrics import Metrics

log = logging.getLogger("taskframe.server")
access = logging.getLogger("taskframe.access")
# Labels must stay a small set whatever clients send: unknown methods are "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")


@functools.lru_cache(maxsize=256)
def route_label(template: str | None) -> str:
    """``/jobs/{job_id:int(min=1)}`` -> ``/jobs/{job_id}``; ``unmatched`` for no route."""
    return _CONVERTER.sub(r"{\1}", template) if template else "unmatched"


class HttpObserver:
    """Counts requests by method, route template and status (``taskframe_http_requests``).

    The route is Falcon's URI template (``/jobs/{job_id}``), never the raw path,
    so that the label set stays small. An access line goes to the
    ``taskframe.access`` logger at DEBUG, or at INFO with ``access_log``.
    """

    def __init__(self, metrics: Metrics, access_log: bool = False) -> None:
        self.counter = metrics.http_requests
        self.access_level = logging.INFO if access_log else logging.DEBUG
        # The counter's child per (method, route template, status), looked up once:
        # ``labels()`` costs a lock and more per call. The keys are the labels' own
        # (a method outside _METHODS is "other"), so the set stays as small as theirs.
        self._children: dict[tuple[str, str | None, str], Any] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        status = falcon.http_status_to_code(resp.status)  # (Falcon 3 has no status_code)
        method = req.method if req.method in _METHODS else "other"
        key = (method, req.uri_template, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.counter.labels(
                method, route_label(req.uri_template), key[2]
            )
        child.inc()
        if status >= 500:
            log.warning("%s %s answered %d", req.method, req.relative_uri, status)
        if access.isEnabledFor(self.access_level):
            started = getattr(req.context, "started", None)
            took = (time.perf_counter() - started) * 1000 if started else 0.0
            access.log(
                self.access_level,
                "%s %s %s %d %.1f ms",
                *(req.remote_addr, req.method, req.relative_uri, status, took),
            )
