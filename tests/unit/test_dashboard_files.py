"""The dashboard's static files: served with the right types, nothing else, and shipped by pip."""

from __future__ import annotations

import configparser
import fnmatch
import re
from pathlib import Path

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.http.resources.dashboard import ASSETS
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    yield testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
    store.close()


def test_root_serves_the_page_with_a_strict_content_security_policy(client):
    answer = client.simulate_get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/dashboard/app.js">' in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")],
)
def test_assets_have_their_content_type(client, name, content_type):
    answer = client.simulate_get(f"/dashboard/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == content_type
    assert answer.content == (ASSETS / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/dashboard/",
        "/dashboard/nope.js",
        "/dashboard/..%2Fapp.py",
        "/dashboard/../app.py",
    ],
)
def test_no_listing_and_nothing_outside_the_folder(client, path):
    answer = client.simulate_get(path)
    assert answer.status_code == 404
    assert answer.json["title"]  # the API's error shape, not a stack trace


def test_every_module_the_page_imports_is_served(client):
    """A missing or misspelt import breaks the whole page in the browser: catch it here."""
    for script in sorted(ASSETS.glob("*.js")):
        for imported in re.findall(r'from "\./([^"]+)"', script.read_text()):
            assert client.simulate_get(f"/dashboard/{imported}").status_code == 200, (
                f"{script.name} imports {imported}"
            )


def test_setup_cfg_ships_every_dashboard_file():
    """``pip install .`` copies only what package_data names: each file must match a pattern."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = config["options.package_data"]["taskframe.server.http"]
    patterns = [p.strip() for p in listed.split(",") if p.strip()]
    files = sorted(p.relative_to(ASSETS.parent).as_posix() for p in ASSETS.iterdir())
    assert files, "server/http/dashboard/ is empty"
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
