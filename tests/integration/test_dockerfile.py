"""The Dockerfile's build context is complete: its COPY lines, replayed, give an installable tree.

No Docker engine runs in CI, so the test does what ``docker build`` does up to
``pip install``: copy exactly what the Dockerfile copies into an empty folder
and install the package from there (offline: no dependencies, no build
isolation, the setuptools of this environment).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What the console scripts import (taskframe-server's is taskframe.standalone).
COMMAND_MODULES = ("taskframe.standalone", "taskframe.worker.cli", "taskframe.client.cli")


def copy_lines(dockerfile: Path) -> list[tuple[list[str], str]]:
    """``COPY src... dest`` lines as (sources, destination); flags such as ``--chown`` dropped."""
    found = []
    for line in dockerfile.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() != "COPY":
            continue
        args = [word for word in words[1:] if not word.startswith("--")]
        assert len(args) >= 2, f"a COPY line without a source and a destination: {line!r}"
        found.append((args[:-1], args[-1]))
    return found


def replay(dockerfile: Path, context: Path, target: Path) -> None:
    """Copy what each COPY line names from ``context`` into ``target`` (the WORKDIR)."""
    for sources, destination in copy_lines(dockerfile):
        for source in sources:
            origin = context / source
            assert origin.exists(), f"the Dockerfile copies {source!r}, which does not exist"
            if destination.endswith("/") or len(sources) > 1:
                place = target / destination / origin.name
            else:
                place = target / destination
            place.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, place, dirs_exist_ok=True, ignore=_ignored)
            else:
                shutil.copy2(origin, place)


def _ignored(folder: str, names: list[str]) -> set[str]:
    return {name for name in names if name in ("__pycache__", ".pytest_cache")}


def _can_build_wheels() -> bool:
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


def test_copy_lines_are_read_with_their_sources_and_destination():
    assert copy_lines(ROOT / "Dockerfile")[0] == (
        ["setup.cfg", "pyproject.toml", "README.md"],
        "./",
    )


@pytest.mark.timeout(300)
def test_the_dockerfile_copies_everything_pip_install_needs(tmp_path: Path):
    context = tmp_path / "app"
    context.mkdir()
    replay(ROOT / "Dockerfile", ROOT, context)
    installed = tmp_path / "site"
    # Offline with this environment's setuptools and wheel (the test extra); else pip
    # fetches the build backend pyproject.toml names, as docker build does.
    offline = ("--no-build-isolation", "--no-index") if _can_build_wheels() else ()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *offline),
            *("--target", str(installed), str(context)),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every package setup.cfg lists was copied, and the console scripts import.
    for package in ("client", "core", "plugins", "server", "worker", "standalone", "testing"):
        assert (installed / "taskframe" / package / "__init__.py").is_file(), package
    assert (installed / "taskframe" / "server" / "http" / "dashboard" / "index.html").is_file()
    check = subprocess.run(
        [sys.executable, "-c", f"import {', '.join(COMMAND_MODULES)}"],
        env={"PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
