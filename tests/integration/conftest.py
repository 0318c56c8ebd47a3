"""Browser fixtures of the dashboard tests (tests/integration/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.browser import REQUIRE_BROWSER, chromium, missing_browser


@pytest.fixture
def browser() -> Iterator[object]:
    """Chromium; skipped, with the reason, when it or Playwright is missing, unless
    ``TASKFRAME_REQUIRE_BROWSER`` is set (as ``.ci/run`` does): then it fails."""
    reason = missing_browser()
    if reason is not None:
        if REQUIRE_BROWSER:
            pytest.fail(f"TASKFRAME_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    with chromium() as launched:
        yield launched


@pytest.fixture
def shots(tmp_path: Path):
    """shots("name", page): a full-page screenshot in this test's screenshots folder."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    print(f"dashboard screenshots: {folder}")

    def take(name: str, page) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    take.folder = folder
    return take
