"""The API explorer at /docs: served from the package, open, within the CSP, shipped by pip."""

from __future__ import annotations

import configparser
import fnmatch
import re
from pathlib import Path

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import create_app
from taskframe.server.http.auth import load_tokens
from taskframe.server.http.resources.apidocs import ASSETS
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TOKEN = "explorer-client-0123456789abcdef"


def make_client(sqlite_url: str, **access) -> testing.TestClient:
    store = open_store(sqlite_url)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    app = create_app(scheduler.config, scheduler, default_plugins(), AccessConfig(**access))
    return testing.TestClient(app)


@pytest.fixture
def client(sqlite_url: str) -> testing.TestClient:
    return make_client(sqlite_url)


def test_docs_serves_the_page_under_the_dashboards_policy(client):
    answer = client.simulate_get("/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert client.simulate_get("/docs/").status_code == 200  # a trailing slash too


def test_every_file_the_page_loads_is_served_from_this_server(client):
    page = client.simulate_get("/docs").text
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page)
    assets = [url for url in loaded if url.startswith("/docs/")]
    assert {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/explorer.js"} <= set(
        assets
    )
    for url in assets:
        answer = client.simulate_get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-security-policy"]
    # Nothing from another origin: no CDN, no inline script (the policy would block it).
    assert not [url for url in loaded if re.match(r"(https?:)?//", url)]
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    script = (ASSETS / "explorer.js").read_text()
    assert "validatorUrl: null" in script  # Swagger UI's default validator is a public server
    assert not re.search(r"https?://", script)


def test_unknown_files_and_paths_outside_the_folder_are_404(client):
    for path in ("/docs/nope.js", "/docs/LICENSE.txt", "/docs/..%2Fapp.py", "/docs/README.md"):
        answer = client.simulate_get(path)
        assert answer.status_code == 404, path
        assert answer.json["title"] == "Not found"


def test_an_unchanged_file_is_revalidated_with_a_304(client):
    first = client.simulate_get("/docs/swagger-ui-bundle.js")
    assert first.status_code == 200 and len(first.content) > 100_000
    again = client.simulate_get(
        "/docs/swagger-ui-bundle.js", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


def test_with_tokens_the_page_is_open_and_the_document_needs_a_token(sqlite_url):
    tokens = load_tokens(None, f"client:{CLIENT_TOKEN}")
    client = make_client(sqlite_url, tokens=tokens)
    assert client.simulate_get("/docs").status_code == 200
    assert client.simulate_get("/docs/explorer.js").status_code == 200
    assert client.simulate_get("/openapi.json").status_code == 401
    bearer = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
    assert client.simulate_get("/openapi.json", headers=bearer).status_code == 200


def test_the_licence_ships_with_the_vendored_files():
    licence = (ASSETS / "LICENSE.txt").read_text()
    assert "Apache License" in licence
    assert (ASSETS / "swagger-ui-bundle.js.LICENSE.txt").exists()
    options = configparser.ConfigParser()
    options.read(ROOT / "setup.cfg")
    section = options["options.package_data"]["taskframe.server.http"]
    patterns = [p.strip() for p in section.split(",")]
    for path in ASSETS.iterdir():
        name = f"apidocs/{path.name}"
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
