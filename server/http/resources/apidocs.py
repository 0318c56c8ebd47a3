"""The API explorer at ``/docs``: Swagger UI on ``/openapi.json``, served from the package.

Like the dashboard: only files found in ``server/http/apidocs/`` with a known
extension are served, under the same Content-Security-Policy (everything from
this server, no inline script). The page itself is open; it fetches
``/openapi.json`` with the token the user pastes when the server has tokens.
The Swagger UI bundle is large (about 1.8 MB), so answers carry an ETag and a
revalidation with ``If-None-Match`` costs a 304.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import falcon

from taskframe.server.http.resources.dashboard import SECURITY_HEADERS, load_assets

ASSETS = Path(__file__).resolve().parent.parent / "apidocs"
PREFIX = "/docs"


class _Explorer:
    def __init__(self, assets: dict[str, tuple[str, bytes]]) -> None:
        self.assets = assets
        self.etags = {
            name: hashlib.sha256(data).hexdigest()[:32]  # Falcon adds the quotes
            for name, (_, data) in assets.items()
        }

    def _send(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in self.assets:
            raise falcon.HTTPNotFound(title="Not found", description=f"no API explorer file {name}")
        content_type, data = self.assets[name]
        resp.set_headers(SECURITY_HEADERS)
        resp.etag = self.etags[name]
        if req.if_none_match and any(
            str(tag) in (self.etags[name], "*") for tag in req.if_none_match
        ):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = content_type
        resp.data = data


class ExplorerPage(_Explorer):
    """``GET /docs``: the explorer's page."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._send(req, resp, "index.html")


class ExplorerFile(_Explorer):
    """``GET /docs/{name}``: Swagger UI's bundle and style sheet, the page's script."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self._send(req, resp, name)


def load_explorer(folder: Path = ASSETS) -> dict[str, tuple[str, bytes]]:
    return load_assets(folder)
