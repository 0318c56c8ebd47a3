"""The web dashboard: static files shipped inside the package, served at ``/``.

Only the files found in ``server/http/dashboard/`` with a known extension are
served, each with an explicit content type: no directory listing, no path
outside that folder. The page talks to the JSON API like any other client.
"""

from __future__ import annotations

import logging
from pathlib import Path

import falcon

log = logging.getLogger("taskframe.server")

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
PREFIX = "/dashboard"

# Explicit types: ES modules need a JavaScript type, and mimetypes varies by platform.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Everything the page loads comes from this server: nothing from elsewhere can run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files, revalidated so that an upgrade shows at once.
    "Cache-Control": "no-cache",
}


def load_assets(folder: Path = ASSETS) -> dict[str, tuple[str, bytes]]:
    """Every servable file of ``folder``: name -> (content type, bytes)."""
    assets: dict[str, tuple[str, bytes]] = {}
    if not folder.is_dir():
        log.warning("dashboard files not found in %s: GET / answers 404", folder)
        return assets
    for path in sorted(folder.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type and path.is_file():
            assets[path.name] = (content_type, path.read_bytes())
    return assets


class _Assets:
    def __init__(self, assets: dict[str, tuple[str, bytes]]) -> None:
        self.assets = assets

    def _send(self, resp: falcon.Response, name: str) -> None:
        if name not in self.assets:
            raise falcon.HTTPNotFound(title="Not found", description=f"no dashboard file {name}")
        content_type, data = self.assets[name]
        resp.content_type = content_type
        resp.data = data
        resp.set_headers(SECURITY_HEADERS)


class DashboardPage(_Assets):
    """``GET /``: the single page; views are chosen by the URL fragment (``#/jobs/12``)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._send(resp, "index.html")


class DashboardFile(_Assets):
    """``GET /dashboard/{name}``: one script or style sheet of the page."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self._send(resp, name)
